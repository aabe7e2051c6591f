package remote_test

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/remote"
)

func TestGate(t *testing.T) {
	g := remote.NewGate(3, 2)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range 2 {
		if g.Enter(a) != remote.Admitted {
			t.Fatal("two from one address")
		}
	}
	if g.Enter(a) != remote.FullAddress {
		t.Fatal("a third from one address was admitted")
	}
	if g.Enter(b) != remote.Admitted || g.Enter(b) != remote.FullTotal {
		t.Fatal("total limit")
	}
	g.Leave(a)
	if g.InFlight() != 2 || g.Enter(a) != remote.Admitted {
		t.Fatal("a slot given back is not reused")
	}
	// An IPv6 host's /64 counts as one address; an IPv4-mapped address as
	// its IPv4 address.
	v6 := remote.NewGate(10, 1)
	if v6.Enter(netip.MustParseAddr("2001:db8::1")) != remote.Admitted ||
		v6.Enter(netip.MustParseAddr("2001:db8::ffff:2")) != remote.FullAddress ||
		v6.Enter(netip.MustParseAddr("2001:db8:0:1::1")) != remote.Admitted {
		t.Fatal("IPv6 /64")
	}
	if v6.Enter(netip.MustParseAddr("192.0.2.9")) != remote.Admitted ||
		v6.Enter(netip.MustParseAddr("::ffff:192.0.2.9")) != remote.FullAddress {
		t.Fatal("IPv4-mapped")
	}
}

func TestIsLoopback(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:9557", "127.3.4.5:1", "[::1]:9557"} {
		if err := remote.IsLoopback(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"0.0.0.0:9557":   "0.0.0.0 is not a loopback address",
		"10.1.2.3:9557":  "10.1.2.3 is not a loopback address",
		"localhost:9557": `"localhost:9557" is not an IP address and port`,
		":9557":          `":9557" is not an IP address and port`,
		"127.0.0.1":      `"127.0.0.1" is not an IP address and port`,
	} {
		if err := remote.IsLoopback(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", bad, err, want)
		}
	}
}

// TestPeerUID: both ends of a real loopback connection, over IPv4 and
// IPv6, find the other's user: this process's.
func TestPeerUID(t *testing.T) {
	if !remote.PeerUIDSupported {
		t.Skip("the system cannot tell a TCP peer's user")
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v", addr, err)
			continue
		}
		defer ln.Close()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer server.Close()
		for _, c := range []net.Conn{server, client} {
			uid, ok, err := remote.PeerUID(c)
			if err != nil || !ok || uid != os.Geteuid() {
				t.Errorf("%s %v: uid %d ok %v err %v, want %d", addr, c.LocalAddr(), uid, ok, err, os.Geteuid())
			}
		}
		// Once the peer is gone, it is not known.
		client.Close()
		bustest.Eventually(t, 5*time.Second, func() bool {
			_, ok, err := remote.PeerUID(server)
			return !ok && err != nil
		}, "a closed peer still has a uid")
	}
}

func TestClientTLSErrors(t *testing.T) {
	pki := bustest.NewPKI(t)
	cert, key := pki.Client(t, "c", bustest.CertOptions{})
	if _, err := remote.ClientTLS(pki.CAFile, cert, key); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ca, cert, key, want string
	}{
		{"/nonexistent/ca.pem", "", "", "cannot read the CA bundle"},
		{key, "", "", "holds no PEM certificate"},
		{pki.CAFile, cert, "", "needs both its certificate and its key file"},
		{pki.CAFile, cert, pki.ServerKey, "cannot load the client certificate"},
	} {
		if _, err := remote.ClientTLS(tc.ca, tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v", tc, err)
		}
	}
	if _, err := remote.LoadServer(pki.ServerCert, pki.ServerKey, "/nonexistent"); err == nil ||
		!strings.Contains(err.Error(), "cannot read the CA bundle") {
		t.Errorf("server without its CA: %v", err)
	}
}
