package main

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// startTLSBus starts a bus that also serves TLS on 127.0.0.1 and returns
// it with the flags of a client with a certificate for cn.
func startTLSBus(t *testing.T, pki *bustest.PKI, cn string) (*server.Server, []string) {
	t.Helper()
	srv := bustest.Start(t, func(c *server.Config) {
		c.TLS.Listen = "127.0.0.1:0"
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = pki.ServerCert, pki.ServerKey, pki.CAFile
	})
	cert, key := pki.Client(t, cn, bustest.CertOptions{})
	return srv, []string{"--url", "tls://" + srv.TLSAddr().String(), "--tls-ca", pki.CAFile, "--tls-cert", cert, "--tls-key", key}
}

// TestRemoteCommands: with --url and the TLS files every command reaches
// a statebusd over TLS; they may come before the command, or from the
// environment; machines shows who came over TLS.
func TestRemoteCommands(t *testing.T) {
	pki := bustest.NewPKI(t)
	srv, remote := startTLSBus(t, pki, "ops")
	url := remote[1]
	local := dial(t, "local", statebus.WithPipeName(srv.Addr()))
	got := make(chan statebus.Event, 1)
	local.OnEvent("PING", func(e statebus.Event) { got <- e })
	local.HandleRequest("Q", func(context.Context, statebus.Event) (any, error) { return "answer", nil })

	r := runCmd(t, "", args(remote, "health")...)
	if r.code != 0 || !strings.Contains(r.stdout, "✓ statebusd on "+url+" is healthy") {
		t.Fatalf("health: %+v", r)
	}
	r = runCmd(t, "", append(remote, "send", "--as", "remote-cli", "local", "PING", `{"N":1}`)...) // flags first
	if r.code != 0 {
		t.Fatalf("send: %+v", r)
	}
	if e := <-got; e.Source != "remote-cli" || string(e.Payload) != `{"N":1}` {
		t.Fatalf("received %+v", e)
	}
	r = runCmd(t, "", args(remote, "request", "--as", "asker", "local", "Q")...)
	if r.code != 0 || !strings.Contains(r.stdout, `"answer"`) {
		t.Fatalf("request: %+v", r)
	}

	// A TLS client is listed with its certificate and address.
	l, err := statebus.Dial(context.Background(), "listener", statebus.WithURL(url), statebus.WithTLSFiles(remote[3], remote[5], remote[7]))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r = runCmd(t, "", args(remote, "machines")...)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasSuffix(lines[0], "CONNECTED FOR  REMOTE") {
		t.Fatalf("machines: %+v", r)
	}
	if f := strings.Fields(lines[1]); f[0] != "listener" || f[2] != "-" || f[3] != "-" || f[len(f)-3] != "CN=ops" ||
		f[len(f)-2] != "at" || !strings.HasPrefix(f[len(f)-1], "127.0.0.1:") {
		t.Errorf("TLS client row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "local" || !strings.HasSuffix(lines[2], " -") {
		t.Errorf("socket client row %q", lines[2])
	}

	// The same from the environment.
	e, out, _ := newEnv("")
	env := map[string]string{"STATEBUS_URL": url, "STATEBUS_TLS_CA": remote[3], "STATEBUS_TLS_CLIENT_CERT": remote[5], "STATEBUS_TLS_CLIENT_KEY": remote[7]}
	e.getenv = func(k string) string { return env[k] }
	if code := run(context.Background(), e, []string{"health"}); code != 0 || !strings.Contains(out.String(), "on "+url+" is healthy") {
		t.Fatalf("health from the environment: exit %d, %s", code, out)
	}
}

// TestRemoteErrors: what a user is told when TLS does not work: the
// server's certificate is signed by a CA they did not give, their own
// certificate is refused, nothing serves the URL.
func TestRemoteErrors(t *testing.T) {
	pki, other := bustest.NewPKI(t), bustest.NewPKI(t)
	srv, remote := startTLSBus(t, pki, "ops")
	url := remote[1]
	wrongCA := append([]string(nil), remote...)
	wrongCA[3] = other.CAFile
	r := runCmd(t, "", args(wrongCA, "health")...)
	if r.code == 0 || !strings.Contains(r.stderr, "its certificate is not trusted") ||
		!strings.Contains(r.stderr, "Give the CA that signs statebusd's certificate with --tls-ca") {
		t.Errorf("wrong CA: %+v", r)
	}
	old, oldKey := pki.Client(t, "old", bustest.CertOptions{NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	expired := append([]string(nil), remote...)
	expired[5], expired[7] = old, oldKey
	r = runCmd(t, "", args(expired, "send", "--as", "x", "y", "E")...)
	if r.code == 0 || !strings.Contains(r.stderr, "Access denied: client certificate CN=old has expired") ||
		!strings.Contains(r.stderr, "refuses your client certificate (--tls-cert)") {
		t.Errorf("expired certificate: %+v", r)
	}
	noCert := remote[:4]
	r = runCmd(t, "", args(noCert, "health")...)
	if r.code == 0 || !strings.Contains(r.stderr, url+" needs a client certificate") {
		t.Errorf("no certificate: %+v", r)
	}
	srv.Shutdown(context.Background())
	r = runCmd(t, "", args(remote, "health")...)
	if r.code == 0 || !strings.Contains(r.stderr, "cannot connect to "+url) || !strings.Contains(r.stderr, "serves that address (TlsListen") {
		t.Errorf("nothing serving: %+v", r)
	}
}

// TestCerts: statebus certs makes a CA, a server and a client
// certificate that a TLS bus and a client accept, with private keys only
// its owner can read, and never overwrites one.
func TestCerts(t *testing.T) {
	dir := bustest.TempDir(t)
	for _, a := range [][]string{{"ca", dir}, {"server", dir, "localhost", "127.0.0.1"}, {"client", dir, "gw-1", "--days", "2"}} {
		if r := runCmd(t, "", append([]string{"certs"}, a...)...); r.code != 0 || !strings.Contains(r.stdout, "✓ wrote ") {
			t.Fatalf("certs %v: %+v", a, r)
		}
	}
	for _, key := range []string{"ca-key.pem", "server-key.pem", "gw-1-key.pem"} {
		if runtime.GOOS == "windows" {
			break // file modes are Unix's: on Windows the directory's access list protects the keys
		}
		if fi, err := os.Stat(filepath.Join(dir, key)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", key, fi.Mode(), err)
		}
	}
	srv := bustest.Start(t, func(c *server.Config) {
		c.TLS.Listen = "127.0.0.1:0"
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "ca.pem")
	})
	r := runCmd(t, "", "machines", "--url", "tls://localhost:"+strconv.Itoa(srv.TLSAddr().(*net.TCPAddr).Port),
		"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, "gw-1.pem"), "--tls-key", filepath.Join(dir, "gw-1-key.pem"))
	if r.code != 0 {
		t.Fatalf("a client with statebus certs' files: %+v", r)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "gw-1.pem"), filepath.Join(dir, "gw-1-key.pem"))
	if err != nil || pair.Leaf.Subject.CommonName != "gw-1" || pair.Leaf.NotAfter.After(time.Now().Add(49*time.Hour)) {
		t.Fatalf("client certificate: %v %+v", err, pair.Leaf)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"client", dir, "gw-1"}, 1, "gw-1.pem exists; remove it first"},
		{[]string{"ca", dir}, 1, "ca.pem exists"},
		{[]string{"client", dir, "../evil"}, 2, `client NAME "../evil": use letters`},
		{[]string{"server", dir}, 2, "server needs the host names"},
		{[]string{"client", bustest.TempDir(t), "x"}, 1, "(make one first: statebus certs ca "},
		{[]string{"intermediate", dir}, 2, `unknown kind "intermediate"`},
	} {
		r := runCmd(t, "", append([]string{"certs"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("certs %v: %+v, want exit %d and %q", tc.args, r, tc.code, tc.want)
		}
	}
}
