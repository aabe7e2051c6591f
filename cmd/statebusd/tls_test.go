//go:build unix

package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
)

// TestTLSReload: statebusd serves TLS as configured by flags; SIGHUP reads
// a renewed server certificate for new connections while existing ones
// stay up; a broken one is logged and the running one stays.
func TestTLSReload(t *testing.T) {
	pki := bustest.NewPKI(t)
	first, err := serialOf(pki.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	d := startDaemon(t, []string{"--pipe-name", filepath.Join(dir, "bus.sock"), "--log-format", "json", "--http", "off",
		"--tls-listen", "127.0.0.1:0", "--tls-cert", pki.ServerCert, "--tls-key", pki.ServerKey, "--tls-client-ca", pki.CAFile}, nil)
	addr, _ := d.waitLog(t, "listening for TLS clients")["addr"].(string)
	cfg := pki.ClientTLS(t, "gw", bustest.CertOptions{})

	dialSerial := func() (*tls.Conn, string) {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	old, serial := dialSerial()
	if serial != first {
		t.Fatalf("served certificate %s, want %s", serial, first)
	}
	r := bufio.NewReader(old)
	register := func(c *tls.Conn, r *bufio.Reader, id string) {
		t.Helper()
		c.Write([]byte(`{"Type":3,"Payload":"` + id + `"}` + "\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, `{"Success":true`) {
			t.Fatalf("register %s: %q %v", id, line, err)
		}
	}
	register(old, r, "before")

	renewed := pki.RenewServer(t).String()
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "reloaded: log levels and access rules applied to new connections, routing rules to the next event")
	c, serial := dialSerial()
	if serial != renewed {
		t.Fatalf("after SIGHUP: served certificate %s, want the renewed %s", serial, renewed)
	}
	register(c, bufio.NewReader(c), "after")
	register(old, r, "before-2") // the old connection is still served

	// A broken certificate file: logged, and the renewed one stays.
	if err := os.WriteFile(pki.ServerCert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	rec := d.waitLog(t, "reload of the TLS certificates failed; the running ones stay")
	if e, _ := rec["err"].(string); !strings.Contains(e, "cannot load the server certificate "+pki.ServerCert) {
		t.Fatalf("reload error %v", rec)
	}
	if _, serial := dialSerial(); serial != renewed {
		t.Fatalf("after a failed reload: served %s, want %s", serial, renewed)
	}
	d.stop(t)
}

func serialOf(certFile string) (string, error) {
	pair, err := tls.LoadX509KeyPair(certFile, strings.TrimSuffix(certFile, ".pem")+"-key.pem")
	if err != nil {
		return "", err
	}
	return pair.Leaf.SerialNumber.String(), nil
}
