package bustest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
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

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

var serial atomic.Int64

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
	p := &PKI{Dir: t.TempDir()}
	p.caKey = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "statebus test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.CAFile = filepath.Join(p.Dir, "ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	p.RenewServer(t)
	return p
}

// RenewServer issues the server a new certificate and key, written over
// ServerCert and ServerKey (as a renewal does), and returns its serial
// number.
func (p *PKI) RenewServer(t testing.TB) *big.Int {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "statebusd"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	p.ServerCert, p.ServerKey = p.issue(t, "server", tmpl, CertOptions{})
	return tmpl.SerialNumber
}

// Client issues a client certificate with common name cn and returns its
// certificate and key files.
func (p *PKI) Client(t testing.TB, cn string, o CertOptions) (certFile, keyFile string) {
	t.Helper()
	usage := o.Usage
	if usage == 0 {
		usage = x509.ExtKeyUsageClientAuth
	}
	return p.issue(t, "client-"+cn, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    o.DNSNames,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}, o)
}

// ClientTLS returns a client configuration that trusts p's CA and
// presents a client certificate for cn (none when cn is "").
func (p *PKI) ClientTLS(t testing.TB, cn string, o CertOptions) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
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

func (p *PKI) issue(t testing.TB, name string, tmpl *x509.Certificate, o CertOptions) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = o.NotBefore, o.NotAfter
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Minute)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(p.Dir, name+".pem")
	keyFile = filepath.Join(p.Dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, file, kind string, der []byte) {
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
