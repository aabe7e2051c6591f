package statebus_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/remote"
	"github.com/statebus/statebus/internal/server"
)

// startTLS starts a server on path that also serves TLS on listen
// (127.0.0.1:0 for a free port), with pki's certificates.
func startTLS(t *testing.T, pki *bustest.PKI, path, listen string) *server.Server {
	t.Helper()
	return bustest.Start(t, func(c *server.Config) {
		if path != "" {
			c.SocketPath = path
		}
		c.TLS.Listen = listen
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = pki.ServerCert, pki.ServerKey, pki.CAFile
	})
}

// dialTLS connects id over TLS with a certificate for cn.
func dialTLS(t *testing.T, pki *bustest.PKI, addr, id, cn string, opts ...statebus.Option) *statebus.Client {
	t.Helper()
	cert, key := pki.Client(t, cn, bustest.CertOptions{})
	c, err := statebus.Dial(ctx(t), id, append([]statebus.Option{
		statebus.WithURL("tls://" + addr), statebus.WithTLSFiles(pki.CAFile, cert, key)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTLSClient: over TLS everything works as over the socket, with a
// client on the socket and one over TLS: events both ways, requests both
// ways, groups and watches; and after the service restarts, the TLS
// client reconnects and has its groups and watches again.
func TestTLSClient(t *testing.T) {
	pki := bustest.NewPKI(t)
	path := bustest.SocketPath(t)
	srv := startTLS(t, pki, path, "127.0.0.1:0")
	addr := srv.TLSAddr().String()
	states := make(chan statebus.StatusChange, 10)
	r := dialTLS(t, pki, addr, "remote", "gw-1",
		statebus.WithReconnectBackoff(time.Millisecond, 20*time.Millisecond),
		statebus.WithStatusHandler(func(s statebus.StatusChange) {
			if s.From != statebus.Connecting {
				states <- s
			}
		}))
	got := make(chan statebus.Event, 10)
	r.OnEvent("E", func(e statebus.Event) { got <- e })
	if err := r.JoinGroup(ctx(t), "workers"); err != nil {
		t.Fatal(err)
	}
	watched := make(chan statebus.Event, 10)
	if _, err := r.Watch(ctx(t), statebus.Filter{EventName: "W"}, func(e statebus.Event) { watched <- e }); err != nil {
		t.Fatal(err)
	}
	r.HandleRequest("Q", func(_ context.Context, e statebus.Event) (any, error) { return "answer to " + e.Source, nil })

	check := func(when string) {
		t.Helper()
		local := dial(t, srv, "local-"+when)
		local.HandleRequest("L", func(context.Context, statebus.Event) (any, error) { return 42, nil })
		if err := local.SendEvent(ctx(t), "remote", "E", when); err != nil {
			t.Fatalf("%s: unicast to the TLS client: %v", when, err)
		}
		if e := <-got; string(e.Payload) != `"`+when+`"` || e.Source != "local-"+when {
			t.Fatalf("%s: got %+v", when, e)
		}
		if err := local.SendEvent(ctx(t), "@workers", "E", "group"); err != nil {
			t.Fatalf("%s: group: %v", when, err)
		}
		if e := <-got; string(e.Payload) != `"group"` {
			t.Fatalf("%s: group event %s", when, e.Payload)
		}
		if err := local.SendEvent(ctx(t), "local-"+when, "W", nil); err != nil {
			t.Fatal(err)
		}
		if e := <-watched; e.Source != "local-"+when || e.Name != "W" {
			t.Fatalf("%s: watch: %+v", when, e)
		}
		if rep, err := local.Request(ctx(t), "remote", "Q", nil); err != nil || string(rep.Payload) != `"answer to local-`+when+`"` {
			t.Fatalf("%s: request to the TLS client: %v %s", when, err, rep.Payload)
		}
		if rep, err := r.Request(ctx(t), "local-"+when, "L", nil); err != nil || string(rep.Payload) != "42" {
			t.Fatalf("%s: request from the TLS client: %v %s", when, err, rep.Payload)
		}
		ms, err := r.Machines(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.MachineID == "remote" && (m.PeerCert != "CN=gw-1" || !strings.HasPrefix(m.PeerAddress, "127.0.0.1:")) {
				t.Fatalf("%s: registry entry %+v", when, m)
			}
		}
		local.Close()
	}
	check("before")

	srv.Shutdown(context.Background())
	if s := <-states; s.To != statebus.Reconnecting || !errors.Is(s.Err, statebus.ErrNotConnected) ||
		!strings.Contains(s.Err.Error(), "connection to tls://"+addr+" lost") {
		t.Fatalf("status change %+v, want connected -> reconnecting", s)
	}
	srv = startTLS(t, pki, path, addr)
	if s := <-states; s.From != statebus.Reconnecting || s.To != statebus.Connected || s.Attempt < 1 {
		t.Fatalf("status change %+v, want reconnecting -> connected", s)
	}
	check("after")
}

// TestTLSDialErrors: what a client is told when TLS cannot work: the
// server's certificate is not trusted, it has no certificate of its own,
// the service refuses its certificate, the URL is wrong.
func TestTLSDialErrors(t *testing.T) {
	pki, other := bustest.NewPKI(t), bustest.NewPKI(t)
	srv := startTLS(t, pki, "", "127.0.0.1:0")
	url := "tls://" + srv.TLSAddr().String()
	cert, key := pki.Client(t, "gw", bustest.CertOptions{})

	// The server's certificate is signed by a CA the client does not
	// trust.
	_, err := statebus.Dial(ctx(t), "a", statebus.WithURL(url), statebus.WithTLSFiles(other.CAFile, cert, key))
	if !errors.Is(err, statebus.ErrUntrustedServer) || !strings.HasPrefix(err.Error(), "statebus: untrusted server: refusing server at "+url+": its certificate is not trusted (x509: ") {
		t.Fatalf("untrusted server: %v", err)
	}
	// No client certificate: refused before connecting.
	_, err = statebus.Dial(ctx(t), "a", statebus.WithURL(url), statebus.WithTLSFiles(pki.CAFile, "", ""))
	if err == nil || !strings.Contains(err.Error(), url+" needs a client certificate") {
		t.Fatalf("no certificate: %v", err)
	}
	// An expired certificate: the service's refusal.
	old, oldKey := pki.Client(t, "old", bustest.CertOptions{NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	_, err = statebus.Dial(ctx(t), "a", statebus.WithURL(url), statebus.WithTLSFiles(pki.CAFile, old, oldKey))
	if !errors.Is(err, statebus.ErrAccessDenied) || !strings.Contains(err.Error(), "Access denied: client certificate CN=old has expired") {
		t.Fatalf("expired certificate: %v", err)
	}
	// A certificate of another CA, given as a tls.Config.
	cfg := pki.ClientTLS(t, "", bustest.CertOptions{})
	oc, ok := other.Client(t, "mallory", bustest.CertOptions{})
	pair, perr := tls.LoadX509KeyPair(oc, ok)
	if perr != nil {
		t.Fatal(perr)
	}
	cfg.Certificates = []tls.Certificate{pair}
	_, err = statebus.Dial(ctx(t), "a", statebus.WithURL(url), statebus.WithTLSConfig(cfg))
	if !errors.Is(err, statebus.ErrAccessDenied) || !strings.Contains(err.Error(), "is not signed by the service's client CA") {
		t.Fatalf("other CA: %v", err)
	}
	// Nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	_, err = statebus.Dial(ctx(t), "a", statebus.WithURL("tls://"+closed), statebus.WithTLSFiles(pki.CAFile, cert, key))
	var de *statebus.DialError
	if !errors.As(err, &de) || !strings.HasPrefix(err.Error(), "statebus: cannot connect to tls://"+closed+": is statebusd running?") {
		t.Fatalf("nothing listening: %v", err)
	}
	// Bad URLs.
	for u, want := range map[string]string{
		"http://h:1":         "has an unknown scheme",
		"tls://h":            "is not just a scheme, a host and a port",
		"tls://h:1/x":        "is not just a scheme, a host and a port",
		"unix://relative":    "names no absolute socket path",
		"tcp://10.0.0.1:1":   "10.0.0.1 is not a loopback address",
		"tcp://localhost:80": `"localhost:80" is not an IP address and port`,
	} {
		_, err := statebus.Dial(ctx(t), "a", statebus.WithURL(u))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", u, err, want)
		}
	}
}

// TestURLFromEnvironment: STATEBUS_URL and the STATEBUS_TLS_* files move a
// program that sets nothing to TLS; unix:// and WithPipeName choose the
// socket.
func TestURLFromEnvironment(t *testing.T) {
	pki := bustest.NewPKI(t)
	srv := startTLS(t, pki, "", "127.0.0.1:0")
	cert, key := pki.Client(t, "env", bustest.CertOptions{})
	t.Setenv("STATEBUS_URL", "tls://"+srv.TLSAddr().String())
	t.Setenv("STATEBUS_TLS_CA", pki.CAFile)
	t.Setenv("STATEBUS_TLS_CLIENT_CERT", cert)
	t.Setenv("STATEBUS_TLS_CLIENT_KEY", key)
	c, err := statebus.Dial(ctx(t), "from-env")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ms := srv.MachineInfos()
	if len(ms) != 1 || ms[0].PeerCert != "CN=env" {
		t.Fatalf("registry %+v", ms)
	}
	// unix:// and the pipe name in slashes: unix:///tmp/.../bus.sock, on
	// Windows unix:////./pipe/statebus-... (\\.\pipe\ in slashes).
	u, err := statebus.Dial(ctx(t), "over-unix", statebus.WithURL("unix://"+filepath.ToSlash(srv.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	dial(t, srv, "over-pipe") // WithPipeName overrides STATEBUS_URL
	for _, m := range srv.MachineInfos() {
		if m.MachineID != "from-env" && (m.PeerCert != "" || m.PeerUID != os.Geteuid()) {
			t.Errorf("%s is not on the socket: %+v", m.MachineID, m)
		}
	}
}

// TestPlainTCPClient: tcp:// reaches the plain TCP listener on loopback,
// and the client checks the user that serves it, as on the socket.
func TestPlainTCPClient(t *testing.T) {
	if !remote.PeerUIDSupported {
		t.Skip("plain TCP is served only where the service can tell a peer's user")
	}
	srv := bustest.Start(t, func(c *server.Config) { c.PlainTCP = "127.0.0.1:0" })
	url := "tcp://" + srv.PlainTCPAddr().String()
	a, err := statebus.Dial(ctx(t), "a", statebus.WithURL(url))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := dial(t, srv, "b")
	got := make(chan statebus.Event, 1)
	b.OnEvent("E", func(e statebus.Event) { got <- e })
	if err := a.SendEvent(ctx(t), "b", "E", 1); err != nil {
		t.Fatal(err)
	}
	<-got
	// The server's user is checked as on the socket: root (which runs
	// this test's server when it runs as root) is always trusted, anyone
	// else only if expected.
	c, err := statebus.Dial(ctx(t), "c", statebus.WithURL(url), statebus.WithServerUID(65534))
	switch {
	case os.Geteuid() == 0 && err != nil:
		t.Fatalf("a root server refused: %v", err)
	case os.Geteuid() == 0:
		c.Close()
	case !errors.Is(err, statebus.ErrUntrustedServer):
		t.Fatalf("server uid check: %v", err)
	}
}

// TestTLSClientCertificateRenewed: the client reads its certificate files
// at each reconnection: files that cannot be read are reported to the
// error handler (and retried), and a renewed certificate is the one the
// next connection presents.
func TestTLSClientCertificateRenewed(t *testing.T) {
	pki := bustest.NewPKI(t)
	path := bustest.SocketPath(t)
	srv := startTLS(t, pki, path, "127.0.0.1:0")
	addr := srv.TLSAddr().String()
	dir := bustest.TempDir(t)
	certFile, keyFile := dir+"/me.pem", dir+"/me-key.pem"
	install := func(cn string) {
		c, k := pki.Client(t, cn, bustest.CertOptions{})
		for from, to := range map[string]string{c: certFile, k: keyFile} {
			data, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("first")
	reported := make(chan error, 10)
	c, err := statebus.Dial(ctx(t), "renewing", statebus.WithURL("tls://"+addr), statebus.WithTLSFiles(pki.CAFile, certFile, keyFile),
		statebus.WithReconnectBackoff(time.Millisecond, 20*time.Millisecond),
		statebus.WithErrorHandler(func(err error) {
			select {
			case reported <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	certOf := func(srv *server.Server) string {
		for _, m := range srv.MachineInfos() {
			if m.MachineID == "renewing" {
				return m.PeerCert
			}
		}
		return ""
	}
	if got := certOf(srv); got != "CN=first" {
		t.Fatalf("registered with %q", got)
	}

	os.Remove(certFile)
	srv.Shutdown(context.Background())
	srv = startTLS(t, pki, path, addr)
	select {
	case err := <-reported:
		if !strings.Contains(err.Error(), "cannot load the client certificate "+certFile) {
			t.Fatalf("reported %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a missing certificate file was not reported")
	}
	install("second")
	bustest.Eventually(t, 10*time.Second, func() bool { return certOf(srv) == "CN=second" },
		"the renewed certificate was not used: %q", certOf(srv))
}
