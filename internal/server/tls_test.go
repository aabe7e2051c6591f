package server_test

import (
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// startTLS starts a server that also serves TLS on 127.0.0.1, with pki's
// server certificate and client CA.
func startTLS(t *testing.T, pki *bustest.PKI, edit func(*server.Config)) *server.Server {
	t.Helper()
	return bustest.Start(t, func(c *server.Config) {
		c.TLS.Listen = "127.0.0.1:0"
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = pki.ServerCert, pki.ServerKey, pki.CAFile
		if edit != nil {
			edit(c)
		}
	})
}

// dialRawTLS is dialRaw over TLS: the bytes a .NET client sends through
// an SslStream, a BOM in a write of its own and then one JSON object per
// line.
func dialRawTLS(t *testing.T, addr string, cfg *tls.Config) *raw {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte{0xEF, 0xBB, 0xBF})
	return bustest.NewRaw(t, c)
}

// TestTLSWire: a .NET-shaped client over TLS registers, subscribes, sends
// to and receives from a Unix socket client, byte for byte as on the
// socket, and the registry names it by its certificate and address.
func TestTLSWire(t *testing.T) {
	pki := bustest.NewPKI(t)
	srv := startTLS(t, pki, nil)
	remote := dialRawTLS(t, srv.TLSAddr().String(), pki.ClientTLS(t, "gw-1", bustest.CertOptions{})).Connect("remote-a")
	local := dialRaw(t, srv).Connect("local-b")

	event := `{ "SourceMachineId":"remote-a", "TargetMachineId":"local-b","EventName":"PING","Payload":{"Message":"Hello","Esc":"\u00e9\n"},"Timestamp":"2025-10-03T17:16:09.8","Extra":[1]}`
	remote.Send(`{"Type":2,"Payload":` + event + `}`)
	local.Expect(`{"Success":true,"Data":` + event + `,"Error":null}`)
	remote.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"local-b"},"Error":null}`)
	back := `{"SourceMachineId":"local-b","TargetMachineId":"remote-a","EventName":"PONG","Payload":null}`
	local.Send(`{"Type":2,"Payload":` + back + `}`)
	remote.Expect(`{"Success":true,"Data":` + back + `,"Error":null}`)
	local.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"remote-a"},"Error":null}`)

	var found bool
	for _, m := range srv.MachineInfos() {
		switch m.MachineID {
		case "remote-a":
			found = true
			if m.PeerCert != "CN=gw-1" || !strings.HasPrefix(m.PeerAddress, "127.0.0.1:") || m.PeerUID != -1 || m.PeerPID != -1 {
				t.Errorf("remote entry %+v", m)
			}
		case "local-b":
			if m.PeerCert != "" || m.PeerAddress != "" || m.PeerUID != os.Geteuid() {
				t.Errorf("local entry %+v", m)
			}
		}
	}
	if !found {
		t.Fatal("remote-a not in the registry")
	}
	// The Machines answer carries them too, to any client.
	remote.Send(`{"Type":101,"Id":7}`)
	line := remote.Read()
	if !strings.Contains(line, `"PeerCert":"CN=gw-1","PeerAddress":"127.0.0.1:`) || strings.Count(line, "PeerCert") != 1 {
		t.Fatalf("Machines answer: %s", line)
	}
}

// TestTLSRefusedCertificates: a certificate of another CA, an expired
// one, one not for client authentication and none at all are each
// answered with "Access denied: ..." saying why, the connection is
// closed, and a warning names the peer's address.
func TestTLSRefusedCertificates(t *testing.T) {
	pki, other := bustest.NewPKI(t), bustest.NewPKI(t)
	var logs bustest.Buffer
	srv := startTLS(t, pki, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	addr := srv.TLSAddr().String()
	withCert := func(certFile, keyFile string) *tls.Config {
		cfg := pki.ClientTLS(t, "", bustest.CertOptions{})
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		return cfg
	}
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, want := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"wrong CA", withCert(other.Client(t, "mallory", bustest.CertOptions{})),
			"Access denied: client certificate CN=mallory is not signed by the service's client CA (TlsClientCa)"},
		{"expired", pki.ClientTLS(t, "old", bustest.CertOptions{NotBefore: past.Add(-time.Hour), NotAfter: past}),
			"Access denied: client certificate CN=old has expired (valid until 2020-01-02T03:04:05Z); renew it"},
		{"not yet valid", pki.ClientTLS(t, "early", bustest.CertOptions{NotBefore: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}),
			"Access denied: client certificate CN=early is not valid yet (valid from 2099-01-01T00:00:00Z)"},
		{"server usage", pki.ClientTLS(t, "srv", bustest.CertOptions{Usage: 1 /* x509.ExtKeyUsageServerAuth */}),
			"Access denied: client certificate CN=srv is not for client authentication (its extended key usage lacks clientAuth)"},
		{"no certificate", pki.ClientTLS(t, "", bustest.CertOptions{}),
			"Access denied: no client certificate: over TLS, statebusd admits clients with a certificate its client CA (TlsClientCa) signed"},
	} {
		t.Run(want.name, func(t *testing.T) {
			// Each from an address of its own: refusals are logged once
			// per address and 10 s.
			nc := dialFrom(t, "127.0.2."+strconv.Itoa(i+1), addr)
			tc := tls.Client(nc, want.cfg)
			c := bustest.NewRaw(t, tc)
			tc.Write([]byte(`{"Type":3,"Payload":"intruder"}` + "\n")) // may fail: the service hangs up
			c.Expect(`{"Success":false,"Data":null,"Error":"` + want.want + `"}`)
			if !closedWithin(tc, 5*time.Second) {
				t.Fatal("the refused connection stayed open")
			}
			bustest.Eventually(t, 5*time.Second, func() bool {
				return strings.Contains(logs.String(), `addr=`+nc.LocalAddr().String())
			}, "no log line names the peer's address %s:\n%s", nc.LocalAddr(), &logs)
		})
	}
	if h := srv.Health(); h.RegisteredMachines != 0 || h.ConnectionCount != 0 {
		t.Fatalf("a refused peer is on the bus: %+v", h)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "client certificate") && !strings.Contains(line, "level=WARN") {
			t.Errorf("a refused certificate is not logged as a warning: %s", line)
		}
	}
	if st := srv.Stats(); st.TLSHandshakesFailed != 5 {
		t.Errorf("refused certificates counted %d, want 5", st.TLSHandshakesFailed)
	}
}

// TestTLSAccessRules: access rules, reservations and AllowCerts name
// certificates as they name uids, and MaxConnectionsPerUid counts each
// certificate as a user.
func TestTLSAccessRules(t *testing.T) {
	pki := bustest.NewPKI(t)
	srv := startTLS(t, pki, func(c *server.Config) {
		c.MaxConnectionsPerUID = 2
		c.Access = access.Policy{
			AllowCerts: []string{"CN=gw-1", "DNS:ok.example"},
			Rules:      []access.Rule{{Cert: "CN=gw-1", Register: []string{"sensor-*"}, SendTo: []string{"controller"}}},
			Reserve:    []access.Reservation{{Cert: "DNS:ok.example", IDs: []string{"reserved-*"}}},
		}
	})
	addr := srv.TLSAddr().String()
	gw := pki.ClientTLS(t, "gw-1", bustest.CertOptions{})
	a := dialRawTLS(t, addr, gw)
	a.Send(`{"Type":3,"Payload":"controller"}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Access denied: CN=gw-1 may not register controller"}`)
	a.Send(`{"Type":3,"Payload":"reserved-1"}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Access denied: CN=gw-1 may not register reserved-1"}`)
	a.Connect("sensor-1")
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"elsewhere","EventName":"X"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Access denied: CN=gw-1 may not send to elsewhere"}`)

	ok := dialRawTLS(t, addr, pki.ClientTLS(t, "other", bustest.CertOptions{DNSNames: []string{"ok.example"}}))
	ok.Connect("reserved-1")
	// Root, locally, may not take a certificate's reserved id.
	local := dialRaw(t, srv)
	local.Send(`{"Type":3,"Payload":"reserved-2"}`)
	local.Expect(`{"Success":false,"Data":null,"Error":"Access denied: machine id reserved-2 is reserved for DNS:ok.example"}`)

	// A certificate AllowCerts does not list.
	no := dialRawTLS(t, addr, pki.ClientTLS(t, "gw-2", bustest.CertOptions{}))
	no.Expect(`{"Success":false,"Data":null,"Error":"Access denied: certificate CN=gw-2 is not allowed to connect (not in Access:AllowCerts)"}`)

	// gw-1 has one connection; a second is fine, a third is refused.
	dialRawTLS(t, addr, gw).Connect("sensor-2")
	third := dialRawTLS(t, addr, gw)
	third.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: 2 connections per user (MaxConnectionsPerUid) for CN=gw-1; close one first"}`)
	if st := srv.Stats(); st.ConnectionsRefusedPerUID != 1 {
		t.Errorf("per-certificate refusal not counted: %+v", st)
	}
}

// TestTLSLimitsAsOnTheSocket: a TLS connection has the socket's limits:
// the handshake timeout (counted from the TCP accept), the message size,
// the ids per connection.
func TestTLSLimitsAsOnTheSocket(t *testing.T) {
	pki := bustest.NewPKI(t)
	srv := startTLS(t, pki, func(c *server.Config) {
		c.HandshakeTimeout = time.Second
		c.MaxMessageBytes = 1024
		c.MaxQueueBytes, c.MaxConnectionBytes = 4096, 16384
		c.MaxIDsPerConnection = 1
	})
	addr := srv.TLSAddr().String()
	cfg := pki.ClientTLS(t, "gw", bustest.CertOptions{})

	idle := dialRawTLS(t, addr, cfg)
	idle.Expect(`{"Success":false,"Data":null,"Error":"Handshake timeout: no Register within 1s"}`)
	if !closedWithin(idle.C, 5*time.Second) {
		t.Fatal("the idle TLS connection stayed open")
	}

	c := dialRawTLS(t, addr, cfg).Connect("one")
	c.Send(`{"Type":3,"Payload":"two"}`)
	c.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: 1 machine ids per connection (MaxIdsPerConnection); unregister one first"}`)
	c.Send(`{"Type":2,"Payload":{"SourceMachineId":"one","TargetMachineId":"x","EventName":"E","Payload":"` + strings.Repeat("a", 2000) + `"}}`)
	c.Expect(`{"Success":false,"Data":null,"Error":"Message exceeds 1024 bytes"}`)
}

// TestPlainTCP: plain TCP is served on loopback only when configured, and
// a peer is known by the uid the kernel lists for its socket.
func TestPlainTCP(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only: PlainTcp needs the kernel's socket table to tell a loopback peer's user")
	}
	srv := bustest.Start(t, func(c *server.Config) { c.PlainTCP = "127.0.0.1:0" })
	c, err := net.Dial("tcp", srv.PlainTCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte{0xEF, 0xBB, 0xBF})
	bustest.NewRaw(t, c).Connect("plain")
	m := srv.MachineInfos()
	if len(m) != 1 || m[0].PeerUID != os.Geteuid() || m[0].PeerPID != -1 || m[0].PeerCert != "" ||
		m[0].PeerAddress != c.LocalAddr().String() {
		t.Fatalf("registry %+v, want uid %d and address %s", m, os.Geteuid(), c.LocalAddr())
	}
	for _, bad := range []string{"0.0.0.0:9557", "192.0.2.1:9557", "localhost:9557", ":9557"} {
		cfg := server.DefaultConfig()
		cfg.SocketPath = "/tmp/x.sock"
		cfg.PlainTCP = bad
		err := cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "config: PlainTcp: ") {
			t.Errorf("PlainTcp %s: %v", bad, err)
		}
	}
}
