package statebus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/statebus/statebus/internal/remote"
)

// The schemes of WithURL.
const (
	schemeTLS  = "tls"
	schemeTCP  = "tcp"
	schemeUnix = "unix"
)

// WithURL sets where the service is, instead of a pipe name:
//
//	tls://HOST:PORT         statebusd's TLS listener (TlsListen), with
//	                        mutual TLS: see WithTLSConfig and WithTLSFiles
//	tcp://127.0.0.1:PORT    its plain TCP listener (PlainTcp), loopback only
//	unix:///PATH            its Unix socket, as WithPipeName(PATH)
//
// Everything else works as over the pipe: reconnection, requests, groups,
// watches. The default is $STATEBUS_URL, else the pipe name; WithPipeName
// chooses the pipe again.
func WithURL(u string) Option {
	return func(o *options) { o.url = u }
}

// WithTLSConfig sets the TLS configuration for a tls:// URL: the CAs that
// sign the server's certificate (RootCAs; nil: the system's) and the
// client's own certificate (Certificates or GetClientCertificate), which
// statebusd requires. ServerName defaults to the URL's host. It is
// cloned.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(o *options) { o.tlsConfig = cfg.Clone() }
}

// WithTLSFiles sets the TLS configuration for a tls:// URL from PEM files:
// the CA bundle that signs the server's certificate ("" for the system's
// roots), and the client's certificate and key. The certificate and key
// are read again at each reconnection, so a renewed certificate is used
// without restarting. The default is $STATEBUS_TLS_CA,
// $STATEBUS_TLS_CLIENT_CERT and $STATEBUS_TLS_CLIENT_KEY.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) { o.tlsFiles = [3]string{caFile, certFile, keyFile}; o.tlsConfig = nil }
}

// target is where the client connects, parsed from WithURL or the pipe
// name.
type target struct {
	scheme string // "" for the pipe
	addr   string // host:port, or the socket path
	name   string // as messages show it: the URL, or the socket path
}

// resolveTarget parses the URL (or takes the pipe path) and, for TLS,
// settles the configuration. Its errors say what to change.
func (o *options) resolveTarget(pipePath string) (target, error) {
	if o.url == "" {
		return target{addr: pipePath, name: pipePath}, nil
	}
	u, err := url.Parse(o.url)
	bad := func(why string) error {
		return fmt.Errorf("statebus: URL %q %s: want tls://HOST:PORT, tcp://127.0.0.1:PORT or unix:///PATH", o.url, why)
	}
	if err != nil {
		return target{}, bad(fmt.Sprintf("cannot be parsed (%v)", err))
	}
	t := target{scheme: u.Scheme, addr: u.Host, name: o.url}
	switch {
	case u.Scheme == schemeUnix:
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return target{}, bad("names no absolute socket path")
		}
		return target{addr: u.Path, name: u.Path}, nil
	case u.Scheme != schemeTLS && u.Scheme != schemeTCP:
		return target{}, bad("has an unknown scheme")
	case u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
		return target{}, bad("is not just a scheme, a host and a port")
	case u.Scheme == schemeTCP:
		if err := remote.IsLoopback(u.Host); err != nil {
			return target{}, fmt.Errorf("statebus: URL %q: %v; use tls:// for other hosts", o.url, err)
		}
		return t, nil
	}
	cfg := o.tlsConfig
	if cfg == nil {
		f := o.tlsFiles
		if cfg, err = remote.ClientTLS(f[0], f[1], f[2]); err != nil {
			return target{}, fmt.Errorf("statebus: TLS files for %s: %w", o.url, err)
		}
	}
	if len(cfg.Certificates) == 0 && cfg.GetClientCertificate == nil {
		return target{}, fmt.Errorf("statebus: %s needs a client certificate, which statebusd requires: "+
			"give it with WithTLSFiles or WithTLSConfig, or STATEBUS_TLS_CLIENT_CERT and STATEBUS_TLS_CLIENT_KEY "+
			"(statebus: --tls-cert and --tls-key)", o.url)
	}
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName = u.Hostname()
	}
	o.tlsConfig = cfg
	return t, nil
}

// dialServer connects to the service and checks who serves it: over the
// pipe and plain TCP the user the kernel names (see WithServerUID), over
// TLS the server's certificate. A failure to connect is a *DialError;
// a server that is not trusted is an error that matches
// ErrUntrustedServer.
func (c *Client) dialServer(ctx context.Context) (net.Conn, error) {
	t := c.target
	switch t.scheme {
	case "":
		nc, err := dialPipe(ctx, t.addr)
		if err != nil {
			return nil, &DialError{Path: t.name, Err: err}
		}
		if err := checkServer(nc, t.name, c.opt.serverUIDs); err != nil {
			nc.Close()
			return nil, err
		}
		return nc, nil
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, &DialError{Path: t.name, Err: err}
	}
	if t.scheme == schemeTCP {
		uid, ok, err := remote.PeerUID(nc)
		switch {
		case err != nil:
			nc.Close()
			return nil, fmt.Errorf("statebus: cannot tell which user serves %s, so it is not trusted: %w", t.name, err)
		case ok && !slices.Contains(c.opt.serverUIDs, uid):
			nc.Close()
			return nil, &UntrustedServerError{Path: t.name, UID: uid, Trusted: c.opt.serverUIDs}
		}
		return nc, nil
	}
	tc := tls.Client(nc, c.opt.tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		var ve *tls.CertificateVerificationError
		var fe *remote.CertFileError
		if errors.As(err, &fe) {
			// Not a DialError: a reconnecting client reports it.
			return nil, fmt.Errorf("statebus: connecting to %s: %w", t.name, fe.Err)
		}
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("%w: refusing server at %s: its certificate is not trusted (%v); "+
				"give the CA that signs it with WithTLSFiles, WithTLSConfig or STATEBUS_TLS_CA (statebus: --tls-ca)",
				ErrUntrustedServer, t.name, ve.Err)
		}
		return nil, &DialError{Path: t.name, Err: fmt.Errorf("TLS handshake: %w", err)}
	}
	return remote.NewConn(tc, nc), nil
}
