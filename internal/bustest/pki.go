package bustest

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/remote"
)

// PKI is a certificate authority made for one test, with files in a
// temporary directory: its CA certificate, a server certificate for
// 127.0.0.1, ::1 and localhost, and client certificates on demand.
type PKI struct {
	Dir string
	// CAFile is the CA certificate (PEM): the server's client CA and the
	// clients' root.
	CAFile string
	// ServerCert and ServerKey are the server's certificate and key files.
	ServerCert, ServerKey string

	ca *remote.CA
	n  atomic.Int64 // names files
}

// CertOptions shape a client certificate. The zero value is a valid
// client certificate for an hour.
type CertOptions struct {
	// NotBefore and NotAfter default to a minute ago and an hour ahead.
	NotBefore, NotAfter time.Time
	// DNSNames are subject alternative names.
	DNSNames []string
	// Usage defaults to client authentication.
	Usage x509.ExtKeyUsage
}

// NewPKI makes a CA and its server certificate.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	ca, err := remote.NewCA("statebus test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{Dir: TempDir(t), ca: ca}
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	writeFile(t, p.CAFile, ca.CertPEM())
	p.RenewServer(t)
	return p
}

// RenewServer issues the server a new certificate and key, written over
// ServerCert and ServerKey (as a renewal does), and returns its serial
// number.
func (p *PKI) RenewServer(t testing.TB) *big.Int {
	t.Helper()
	p.ServerCert, p.ServerKey = p.issue(t, "server", remote.Request{
		CommonName: "statebusd", Hosts: []string{"localhost", "127.0.0.1", "::1"}, Usage: x509.ExtKeyUsageServerAuth,
	})
	pair, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber
}

// Client issues a client certificate with common name cn and returns its
// certificate and key files.
func (p *PKI) Client(t testing.TB, cn string, o CertOptions) (certFile, keyFile string) {
	t.Helper()
	usage := o.Usage
	if usage == 0 {
		usage = x509.ExtKeyUsageClientAuth
	}
	return p.issue(t, "client-"+cn, remote.Request{
		CommonName: cn, Hosts: o.DNSNames, Usage: usage, NotBefore: o.NotBefore, NotAfter: o.NotAfter,
	})
}

// ClientTLS returns a client configuration that trusts p's CA and
// presents a client certificate for cn (none when cn is "").
func (p *PKI) ClientTLS(t testing.TB, cn string, o CertOptions) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if cn != "" {
		cert, key := p.Client(t, cn, o)
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

func (p *PKI) issue(t testing.TB, name string, r remote.Request) (certFile, keyFile string) {
	t.Helper()
	if r.NotBefore.IsZero() {
		r.NotBefore = time.Now().Add(-time.Minute)
	}
	if r.NotAfter.IsZero() {
		r.NotAfter = time.Now().Add(time.Hour)
	}
	cert, key, err := p.ca.Issue(r)
	if err != nil {
		t.Fatal(err)
	}
	if name != "server" {
		name += "-" + strconv.FormatInt(p.n.Add(1), 10) // each issued certificate has files of its own
	}
	certFile = filepath.Join(p.Dir, name+".pem")
	keyFile = filepath.Join(p.Dir, name+"-key.pem")
	writeFile(t, certFile, cert)
	writeFile(t, keyFile, key)
	return certFile, keyFile
}

func writeFile(t testing.TB, file string, data []byte) {
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
