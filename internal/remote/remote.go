// Package remote is what statebus needs to serve, and reach, a bus over
// TCP rather than a Unix socket: the certificates of mutual TLS (loading
// them and verifying a client's), the gate that bounds TLS handshakes in
// flight, a connection wrapper that never blocks on close, and, for plain
// TCP on loopback, the user id of the process at the other end. Who a
// verified certificate is, and what it may do, is package access's.
package remote

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/protocol"
)

// ServerTLS is statebusd's TLS material: its certificate and the CA that
// signs its clients' certificates.
type ServerTLS struct {
	// Config is the listener's configuration. It asks for a client
	// certificate but lets the handshake finish without one, so that the
	// refusal reaches the client as an "Access denied: ..." line it can
	// show, rather than as a TLS alert; Verify decides.
	Config    *tls.Config
	clientCAs *x509.CertPool
}

// LoadServer reads the server's certificate chain and key (PEM) and the
// client CA bundle (PEM). Errors name the file and what is wrong with it.
func LoadServer(certFile, keyFile, clientCAFile string) (*ServerTLS, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load the server certificate %s with key %s: %w", certFile, keyFile, err)
	}
	pool, err := LoadCAs(clientCAFile)
	if err != nil {
		return nil, err
	}
	return &ServerTLS{
		Config: &tls.Config{
			Certificates: []tls.Certificate{cert},
			// Requested, and verified by Verify after the handshake. The
			// request names no CA: a Go client holding a certificate of
			// another CA would then send none, and be told "no client
			// certificate" instead of what is wrong with the one it has.
			ClientAuth: tls.RequestClientCert,
			MinVersion: tls.VersionTLS12,
		},
		clientCAs: pool,
	}, nil
}

// LoadCAs reads a PEM bundle of CA certificates.
func LoadCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate (want -----BEGIN CERTIFICATE-----)", file)
	}
	return pool, nil
}

// maxNameInError bounds how much of an unverified certificate's name an
// error repeats: the peer chose it.
const maxNameInError = 64

// Verify checks the client certificate of a finished handshake against the
// client CA, for client authentication, at now, and returns its identity.
// The error is an "Access denied: ..." protocol error that says why.
func (s *ServerTLS) Verify(cs tls.ConnectionState, now time.Time) (*access.CertID, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errNoClientCert
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.clientCAs,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	id := access.CertIdentity(leaf)
	if err == nil {
		return id, nil
	}
	name := id.Name
	if len(name) > maxNameInError {
		name = name[:maxNameInError] + "..."
	}
	var why string
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && now.After(leaf.NotAfter):
		why = "has expired (valid until " + leaf.NotAfter.UTC().Format(time.RFC3339) + "); renew it"
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		why = "is not valid yet (valid from " + leaf.NotBefore.UTC().Format(time.RFC3339) + ")"
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		why = "is not for client authentication (its extended key usage lacks clientAuth)"
	case errors.As(err, &unknown):
		why = "is not signed by the service's client CA (TlsClientCa)"
	default:
		why = "cannot be verified: " + err.Error()
	}
	return nil, protocol.ErrAccessDenied.New("client certificate " + name + " " + why)
}

var errNoClientCert = protocol.ErrAccessDenied.New("no client certificate: over TLS, statebusd admits clients with a certificate its client CA (TlsClientCa) signed")

// ClientTLS returns the configuration a client dials with: the server is
// verified against the CA bundle in caFile (the system's roots when it is
// ""), and the client's certificate and key are read from their files at
// each handshake, so that a renewed certificate is used from the next
// reconnection on. The files are read once here, so that a mistake shows
// at once.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCAs(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile == "" && keyFile == "" {
		return cfg, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return nil, fmt.Errorf("cannot load the client certificate %s with key %s: %w", certFile, keyFile, err)
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, &CertFileError{fmt.Errorf("cannot load the client certificate %s with key %s: %w", certFile, keyFile, err)}
		}
		return &cert, nil
	}
	return cfg, nil
}

// CertFileError is a handshake's failure to read the client's own
// certificate files: the client's problem, not the network's.
type CertFileError struct{ Err error }

func (e *CertFileError) Error() string { return e.Err.Error() }
func (e *CertFileError) Unwrap() error { return e.Err }

// Conn is a TLS connection whose Close closes the TCP connection at once.
// tls.Conn's Close first sends a close_notify alert and may wait up to 5
// s for a peer that does not read; statebus lines are self-delimiting, so
// nothing is lost without the alert, and no goroutine waits on a peer.
type Conn struct {
	*tls.Conn
	raw net.Conn
}

// NewConn wraps tc, running over raw.
func NewConn(tc *tls.Conn, raw net.Conn) *Conn { return &Conn{Conn: tc, raw: raw} }

// Close closes the TCP connection.
func (c *Conn) Close() error { return c.raw.Close() }

// CloseWrite shuts the TCP connection's write side (the peer reads EOF),
// without a close_notify alert, as Close.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// CloseRead shuts the TCP connection's read side, which ends a blocked
// Read. On Windows shutdown(SD_RECEIVE) leaves a pending read waiting, so
// there it is unsupported and the caller must end the Read otherwise (a
// read deadline).
func (c *Conn) CloseRead() error {
	if runtime.GOOS == "windows" {
		return errors.ErrUnsupported
	}
	if cr, ok := c.raw.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return errors.ErrUnsupported
}
