package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/statebus/statebus/internal/remote"
	"github.com/statebus/statebus/protocol"
)

// TLSConfig configures the listener for remote clients: mutual TLS, the
// same protocol as on the Unix socket. A client is known by its
// certificate (see access.CertIdentity), which the access policy's Cert
// rules name as the local rules name uids; every per-connection limit
// applies as on the socket.
type TLSConfig struct {
	// Listen is the host:port to serve TLS on ("0.0.0.0:9556", ":9556");
	// "" serves none.
	Listen string
	// Cert and Key are the server's certificate chain and private key
	// (PEM files); ClientCA is the CA bundle (PEM) whose certificates
	// clients must present. SIGHUP (ReloadTLS) reads them again.
	Cert, Key, ClientCA string
	// MaxHandshakes bounds the TLS handshakes in flight, and
	// MaxHandshakesPerAddress those from one address (an IPv6 address
	// counts with its /64). A connection past either is closed at once;
	// one in flight has HandshakeTimeout, counted from its accept, to
	// finish the handshake and register.
	MaxHandshakes           int
	MaxHandshakesPerAddress int
}

// TLSConnBytes is about what TLS holds for one connection besides what
// the connection's budget counts: a record being read and one being
// written, and the peer's certificate chain (Go bounds a handshake
// message at 64 KiB).
const TLSConnBytes = 128 << 10

// validateRemote checks the TLS and plain TCP settings.
func (c *Config) validateRemote() error {
	t := c.TLS
	if t.Listen != "" {
		if _, _, err := net.SplitHostPort(t.Listen); err != nil {
			return fmt.Errorf("config: TlsListen %q: want HOST:PORT, e.g. 0.0.0.0:9556 (%v)", t.Listen, err)
		}
		for _, f := range []struct{ key, v string }{{"TlsCert", t.Cert}, {"TlsKey", t.Key}, {"TlsClientCa", t.ClientCA}} {
			if f.v == "" {
				return fmt.Errorf("config: TlsListen is set but %s is not: serving TLS needs the server's certificate (TlsCert), its key (TlsKey) and the CA that signs the clients' certificates (TlsClientCa)", f.key)
			}
		}
	}
	switch {
	case t.MaxHandshakes < 1:
		return fmt.Errorf("config: TlsMaxHandshakes must be at least 1, not %d", t.MaxHandshakes)
	case t.MaxHandshakesPerAddress < 1:
		return fmt.Errorf("config: TlsMaxHandshakesPerAddress must be at least 1, not %d", t.MaxHandshakesPerAddress)
	}
	if c.PlainTCP != "" {
		if err := remote.IsLoopback(c.PlainTCP); err != nil {
			return fmt.Errorf("config: PlainTcp: %v; serve other hosts with TlsListen", err)
		}
		if !remote.PeerUIDSupported {
			return errors.New("config: PlainTcp works only on Linux, where statebusd can tell which user a loopback connection comes from; use TlsListen")
		}
	}
	return nil
}

// listenRemote opens the TLS and plain TCP listeners that are configured,
// and loads the TLS certificates. On an error nothing stays open.
func (s *Server) listenRemote() error {
	t := s.cfg.TLS
	if t.Listen != "" {
		if err := s.ReloadTLS(); err != nil {
			return err
		}
		s.gate = remote.NewGate(t.MaxHandshakes, t.MaxHandshakesPerAddress)
	}
	for _, l := range []struct {
		addr string
		ln   *net.Listener
	}{{t.Listen, &s.tlsLn}, {s.cfg.PlainTCP, &s.plainLn}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			s.closeRemote()
			return fmt.Errorf("cannot listen on %s: %w", l.addr, err)
		}
		*l.ln = ln
	}
	return nil
}

// ReloadTLS reads the TLS listener's certificate, key and client CA again
// (after a renewal): new connections use them; existing ones keep theirs.
// On an error the running ones stay.
func (s *Server) ReloadTLS() error {
	t := s.cfg.TLS
	if t.Listen == "" {
		return nil
	}
	st, err := remote.LoadServer(t.Cert, t.Key, t.ClientCA)
	if err != nil {
		return fmt.Errorf("TLS (TlsCert, TlsKey, TlsClientCa): %w", err)
	}
	s.tls.Store(st)
	return nil
}

// TLSAddr returns the address the TLS listener listens on, nil if none.
func (s *Server) TLSAddr() net.Addr { return addrOf(s.tlsLn) }

// PlainTCPAddr returns the address the plain TCP listener listens on, nil
// if none.
func (s *Server) PlainTCPAddr() net.Addr { return addrOf(s.plainLn) }

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// closeRemote closes the TCP listeners: their accept loops return.
func (s *Server) closeRemote() {
	for _, ln := range []net.Listener{s.tlsLn, s.plainLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// serveRemote starts the accept loops of the TCP listeners.
func (s *Server) serveRemote() {
	if s.tlsLn != nil {
		s.log.Info("listening for TLS clients", "addr", s.tlsLn.Addr().String(),
			"max_handshakes", s.cfg.TLS.MaxHandshakes)
		s.remoteLoops.Add(1)
		go s.acceptTLS(s.tlsLn)
	}
	if s.plainLn != nil {
		s.log.Warn("listening on plain TCP: events and identities cross it unencrypted; loopback only",
			"addr", s.plainLn.Addr().String())
		s.remoteLoops.Add(1)
		go func() {
			defer s.remoteLoops.Done()
			s.accept(s.plainLn, s.servePlain)
		}()
	}
}

// acceptTLS accepts TLS clients until Shutdown. Each connection takes a
// slot of the handshake gate, or is closed at once, and does its
// handshake on a goroutine of its own: a peer that never finishes one
// holds its slot for HandshakeTimeout at most, and never the accept loop.
func (s *Server) acceptTLS(ln net.Listener) {
	defer s.remoteLoops.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops the handshakes in flight
	s.accept(ln, func(nc net.Conn) {
		at := time.Now()
		ip := remote.AddrOf(nc.RemoteAddr())
		if full := s.gate.Enter(ip); full != remote.Admitted {
			s.ctr.handshakesRefused.Add(1)
			limit := "TlsMaxHandshakes"
			if full == remote.FullAddress {
				limit = "TlsMaxHandshakesPerAddress"
			}
			s.warns.warn(s.log, "tls_handshakes", "addr "+ip.String(), "connection closed: too many TLS handshakes in flight",
				"addr", nc.RemoteAddr().String(), "limit", limit)
			nc.Close()
			return
		}
		s.handlers.Add(1)
		go s.handshakeTLS(ctx, nc, ip, at)
	})
}

// handshakeTLS does a TLS client's handshake and checks its certificate
// within HandshakeTimeout of its accept, then serves it as any other
// connection. A refused certificate is told why ("Access denied: ...")
// and logged with the peer's address.
func (s *Server) handshakeTLS(ctx context.Context, nc net.Conn, ip netip.Addr, at time.Time) {
	defer s.handlers.Done()
	inGate := true
	defer func() {
		if inGate {
			s.gate.Leave(ip)
		}
	}()
	addr := nc.RemoteAddr().String()
	st := s.tls.Load()
	deadline := at.Add(s.cfg.HandshakeTimeout)
	nc.SetDeadline(deadline)
	tc := tls.Server(nc, st.Config)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		s.ctr.handshakesFailed.Add(1)
		s.warns.log(s.log, slog.LevelInfo, "tls_handshake", "addr "+ip.String(), "TLS handshake failed", "addr", addr, "err", err)
		nc.Close()
		return
	}
	rc := remote.NewConn(tc, nc)
	id, err := st.Verify(tc.ConnectionState(), time.Now())
	if err != nil {
		s.ctr.handshakesFailed.Add(1)
		s.warns.warn(s.log, "refused", "addr "+ip.String(), "connection refused: client certificate", "reason", err, "addr", addr)
		refuse(rc, protocol.Wire(err).Text)
		return
	}
	s.gate.Leave(ip)
	inGate = false
	nc.SetDeadline(time.Time{}) // the reader sets the deadline to register
	c := s.newConn(rc)
	c.cert, c.addr, c.connectedAt = id, addr, at
	s.open(c)
}

// servePlain serves a plain TCP connection on loopback, whose peer's uid
// the kernel's socket table names; its pid and groups are unknown.
func (s *Server) servePlain(nc net.Conn) {
	c := s.newConn(nc)
	c.addr = nc.RemoteAddr().String()
	if uid, ok, err := remote.PeerUID(nc); ok {
		c.uid = uid
	} else if err != nil {
		s.log.Debug("cannot tell the user of a plain TCP peer", "addr", c.addr, "err", err)
	}
	s.open(c)
}
