// Package server is statebusd: it accepts connections on a Unix socket
// (and, when configured, over TLS and plain loopback TCP), keeps the
// registry of machine ids and routes events between them, speaking the
// XStateNet InterProcess protocol.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/park"
	"github.com/statebus/statebus/internal/pipesec"
	"github.com/statebus/statebus/internal/remote"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

// Config is the service's configuration. Start from DefaultConfig.
type Config struct {
	// SocketPath is where the service listens: protocol.PipePath of the
	// configured pipe name.
	SocketPath string
	// SocketMode is the socket file's permission bits. 0660 lets the
	// service's user and group connect. Unix only.
	SocketMode os.FileMode
	// PipeSecurity says who may open the named pipe on Windows
	// (MessageBus:PipeSecurity): pipesec.Owner, pipesec.Interactive or an
	// SDDL security descriptor. Ignored on Unix.
	PipeSecurity string
	// MaxConnections is how many clients may be connected at once; one
	// more gets "Too many connections (limit N)" and is closed.
	MaxConnections int
	// MaxMessageBytes is the longest request line accepted; longer lines
	// are discarded and answered with "Message exceeds N bytes".
	MaxMessageBytes int
	// MaxQueueBytes bounds each connection's outbound queue. A sender whose
	// target's queue is full waits up to SlowConsumerTimeout.
	MaxQueueBytes int
	// MaxQueueEvents bounds the events queued per connection, as
	// MaxQueueBytes bounds bytes.
	MaxQueueEvents int
	// MaxConnectionBytes is the hard cap on what the service holds for one
	// connection's outbound side: queued events, acknowledgements, errors,
	// replies and the batch being written, each queued event also counting
	// RecordBytes of bookkeeping. A line that would pass it closes the
	// connection as a slow consumer (logged with the peer's identity).
	// Together with MaxMessageBytes (the read buffer) it is the
	// connection's memory budget.
	MaxConnectionBytes int
	// MaxIDsPerConnection bounds the machine ids one connection holds.
	MaxIDsPerConnection int
	// MaxGroupsPerConnection bounds the group memberships (id, group) of
	// one connection.
	MaxGroupsPerConnection int
	// MaxWatchesPerConnection bounds the watch filters of one connection;
	// MaxPatternBytes bounds each of a filter's patterns.
	MaxWatchesPerConnection int
	MaxPatternBytes         int
	// MaxPendingRequests bounds the requests one connection has waiting
	// for replies.
	MaxPendingRequests int
	// RequestTimeout is the longest a request waits for its reply, also
	// when the caller gave no TimeoutMs; then the caller gets "No
	// responder: ID did not reply within T".
	RequestTimeout time.Duration
	// MaxConnectionsPerUID bounds the connections of one user, so that
	// one local user cannot take every connection. The service's own uid
	// and root are not limited by it. Each TLS certificate identity counts
	// as one user.
	MaxConnectionsPerUID int
	// HandshakeTimeout is how long a new connection may take to register
	// (or ask a Health or Machines question) before it is closed, so that
	// connections that send nothing, or half a line, hold nothing for long.
	HandshakeTimeout time.Duration
	// SlowConsumerTimeout is how long a sender waits for a full target
	// queue before its event is refused with "Target machine is not
	// keeping up".
	SlowConsumerTimeout time.Duration
	// WriteTimeout is how long one write to a connection may stay blocked
	// (its peer not reading) before the connection is closed as a slow
	// consumer and the events queued for it fail, as nats-server's
	// write_deadline does.
	WriteTimeout time.Duration
	// HealthCheckInterval is how often the health monitor logs the
	// service's health. Zero disables the monitor.
	HealthCheckInterval time.Duration
	// IdleWarning is how long without any activity before the health
	// monitor warns.
	IdleWarning time.Duration
	// ShutdownTimeout bounds how long Shutdown waits for queued lines to be
	// written before it closes connections anyway.
	ShutdownTimeout time.Duration
	// Access says who may connect and what each user may do. The zero
	// value admits the service's user, root and the socket's group.
	Access access.Policy
	// Routes are the operator's routing rules (copy, redirect, drop), in
	// order; see router.RouteRule.
	Routes []router.RouteRule
	// TLS configures the listener for remote clients (the MessageBus:Tls* settings).
	TLS TLSConfig
	// PlainTCP is a loopback host:port to serve without TLS as well, ""
	// for none (MessageBus:PlainTcp).
	PlainTCP string
	// OnRouteLatency, when set, receives how long sampled events (one in
	// 64) took from being queued for their target to being written to its
	// socket.
	// It is called from connection writers and must be quick.
	OnRouteLatency func(time.Duration)
	// Durable turns on durable mailboxes: see DurableConfig.
	Durable DurableConfig
	// Tracer, when set, traces the routing of events whose sender
	// attached a sampled W3C trace context, and the delivery of each line
	// they queue (trace.go). Nil: events are routed without a look at
	// their trace context.
	Tracer trace.Tracer
	// Logger receives the service's logs. Nil discards them.
	Logger *slog.Logger
	// Federation, when set, makes this daemon a member of a federation
	// (see package federation): ids are claimed cluster-wide and events
	// to ids held elsewhere are routed there. Nil: a standalone bus.
	Federation *federation.Node
	// NoCompactFraming refuses the compact framing (docs/protocol.md):
	// every client is answered in JSON lines, as by the .NET service.
	NoCompactFraming bool
}

// DefaultConfig returns the configuration statebusd runs with when nothing
// is configured: the original service's pipe name and limits.
func DefaultConfig() Config {
	return Config{
		SocketPath:              protocol.PipePath(protocol.DefaultPipeName),
		SocketMode:              0o660,
		PipeSecurity:            pipesec.Owner,
		MaxConnections:          100,
		MaxMessageBytes:         1 << 20,
		MaxQueueBytes:           4 << 20,
		MaxQueueEvents:          65536,
		MaxConnectionBytes:      16 << 20,
		MaxIDsPerConnection:     64,
		MaxGroupsPerConnection:  64,
		MaxWatchesPerConnection: 16,
		MaxPatternBytes:         256,
		MaxPendingRequests:      1024,
		RequestTimeout:          5 * time.Minute,
		MaxConnectionsPerUID:    32,
		HandshakeTimeout:        10 * time.Second,
		SlowConsumerTimeout:     5 * time.Second,
		WriteTimeout:            10 * time.Second,
		HealthCheckInterval:     30 * time.Second,
		IdleWarning:             5 * time.Minute,
		ShutdownTimeout:         5 * time.Second,
		TLS:                     TLSConfig{MaxHandshakes: 64, MaxHandshakesPerAddress: 8},
		Durable:                 DurableConfig{Store: durable.DefaultConfig("")},
	}
}

// Validate reports the first field that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.SocketPath == "":
		return errors.New("config: SocketPath is empty")
	case len(c.SocketPath) > 107:
		return fmt.Errorf("config: socket path %q is %d bytes; Unix sockets allow at most 107", c.SocketPath, len(c.SocketPath))
	case c.SocketMode&^os.ModePerm != 0 || c.SocketMode&0o600 != 0o600:
		return fmt.Errorf("config: SocketMode %o must be permission bits including 0600", c.SocketMode)
	case pipesec.Check(c.PipeSecurity) != nil:
		return pipesec.Check(c.PipeSecurity)
	case c.MaxConnections < 1:
		return fmt.Errorf("config: MaxConnections must be at least 1, not %d", c.MaxConnections)
	case c.MaxMessageBytes < 1024:
		return fmt.Errorf("config: MaxMessageBytes must be at least 1024, not %d", c.MaxMessageBytes)
	case c.MaxQueueBytes < c.MaxMessageBytes:
		return fmt.Errorf("config: MaxQueueBytes (%d) must be at least MaxMessageBytes (%d)", c.MaxQueueBytes, c.MaxMessageBytes)
	case c.MaxQueueEvents < 1:
		return fmt.Errorf("config: MaxQueueEvents must be at least 1, not %d", c.MaxQueueEvents)
	case c.MaxConnectionBytes < 2*(c.MaxQueueBytes+c.MaxMessageBytes):
		return fmt.Errorf("config: MaxConnectionBytes (%d) must be at least twice MaxQueueBytes + MaxMessageBytes (%d): a full queue, the batch being written and room for acknowledgements", c.MaxConnectionBytes, 2*(c.MaxQueueBytes+c.MaxMessageBytes))
	case c.MaxIDsPerConnection < 1:
		return fmt.Errorf("config: MaxIdsPerConnection must be at least 1, not %d", c.MaxIDsPerConnection)
	case c.MaxGroupsPerConnection < 0:
		return fmt.Errorf("config: MaxGroupsPerConnection must not be negative, not %d", c.MaxGroupsPerConnection)
	case c.MaxWatchesPerConnection < 0:
		return fmt.Errorf("config: MaxWatchesPerConnection must not be negative, not %d", c.MaxWatchesPerConnection)
	case c.MaxPatternBytes < 1:
		return fmt.Errorf("config: MaxPatternBytes must be at least 1, not %d", c.MaxPatternBytes)
	case c.MaxPendingRequests < 0:
		return fmt.Errorf("config: MaxPendingRequests must not be negative, not %d", c.MaxPendingRequests)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("config: RequestTimeout must be positive, not %v", c.RequestTimeout)
	case c.MaxConnectionsPerUID < 1:
		return fmt.Errorf("config: MaxConnectionsPerUid must be at least 1, not %d", c.MaxConnectionsPerUID)
	case c.HandshakeTimeout <= 0:
		return fmt.Errorf("config: HandshakeTimeout must be positive, not %v", c.HandshakeTimeout)
	case c.SlowConsumerTimeout <= 0:
		return fmt.Errorf("config: SlowConsumerTimeout must be positive, not %v", c.SlowConsumerTimeout)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("config: WriteTimeout must be positive, not %v", c.WriteTimeout)
	case c.HealthCheckInterval < 0:
		return fmt.Errorf("config: HealthCheckInterval must not be negative, not %v", c.HealthCheckInterval)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("config: ShutdownTimeout must be positive, not %v", c.ShutdownTimeout)
	}
	return c.validateRemote()
}

// Health is the service's health status, as the original's
// GetHealthStatus reports it.
type Health struct {
	IsHealthy          bool
	ConnectionCount    int
	RegisteredMachines int
	LastActivityAt     time.Time
}

// Server is a running statebusd.
type Server struct {
	cfg     Config
	log     *slog.Logger
	routes  *router.Table[*conn]
	watches *router.Watches[*conn]

	ln         net.Listener
	sockInfo   os.FileInfo
	ownsSocket bool // Start created the socket file, so Shutdown removes it
	access     atomic.Pointer[access.Checker]
	rules      atomic.Pointer[router.Rules] // nil: no rules
	tap        atomic.Pointer[Tap]          // nil: no dashboard open
	fed        *federation.Node             // nil: federation off
	fedMu      fedState
	dur        *durStore    // nil: durability off
	parker     *park.Parker // idle readers parked; nil: none park (not Linux)

	mu       sync.Mutex
	conns    map[*conn]struct{}
	perPeer  map[peerKey]int // connections of each limited user or certificate
	handlers sync.WaitGroup
	warns    logLimiter

	tlsLn       net.Listener   // nil unless TLS is configured
	plainLn     net.Listener   // nil unless PlainTCP is configured
	remoteLoops sync.WaitGroup // their accept loops
	tls         atomic.Pointer[remote.ServerTLS]
	gate        *remote.Gate // TLS handshakes in flight

	ctr          serverCounters
	liveSpans    atomic.Int64  // statebus.deliver spans not yet ended (trace.go)
	nextToken    atomic.Uint64 // request tokens
	nextWatch    atomic.Uint64 // watch ids
	nextConn     atomic.Uint64
	connCount    atomic.Int64
	lastActivity atomic.Int64 // unix nanoseconds
	peak         atomic.Int64
	peakAt       atomic.Int64 // unix nanoseconds
	startedAt    time.Time

	done      chan struct{}
	closeOnce sync.Once
	serveDone chan struct{}
	serveErr  error
}

// New checks cfg and returns a server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       log,
		routes:    router.New[*conn](),
		watches:   router.NewWatches[*conn](),
		conns:     make(map[*conn]struct{}),
		perPeer:   make(map[peerKey]int),
		done:      make(chan struct{}),
		serveDone: make(chan struct{}),
		startedAt: time.Now(),
	}
	s.lastActivity.Store(s.startedAt.UnixNano())
	if cfg.Federation != nil {
		s.fed = cfg.Federation
		s.fed.SetHandler(s.fromDaemon)
		s.fed.OnLeaseLost(s.leaseLost)
	}
	if err := s.SetAccess(cfg.Access); err != nil {
		return nil, err
	}
	if err := s.SetRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	if err := s.openDurable(); err != nil {
		return nil, err
	}
	return s, nil
}

// SetRoutes checks and replaces the routing rules (SIGHUP reloads them);
// they apply to the next event. A rule list with a redirect loop is
// refused and the running rules stay.
func (s *Server) SetRoutes(rules []router.RouteRule) error {
	if len(rules) == 0 {
		s.rules.Store(nil)
		return nil
	}
	rs, err := router.CompileRules(rules)
	if err != nil {
		return err
	}
	s.rules.Store(rs)
	return nil
}

// SetAccess replaces the access policy. It applies to connections made
// from now on; existing connections keep the rules they connected under.
func (s *Server) SetAccess(p access.Policy) error {
	gid := os.Getegid()
	if st, ok := sysStat(s.sockInfo); ok {
		gid = st
	}
	c, err := access.New(p, os.Geteuid(), gid)
	if err != nil {
		return err
	}
	s.cfg.Access = p
	s.access.Store(c)
	return nil
}

// Start listens on the configured socket and serves in the background
// until Shutdown, which removes the socket file again.
func (s *Server) Start() error {
	ln, err := listen(&s.cfg)
	if err != nil {
		return err
	}
	s.ownsSocket = true
	if err := s.StartOn(ln); err != nil {
		ln.Close()
		os.Remove(s.cfg.SocketPath)
		s.ownsSocket = false
		return err
	}
	return nil
}

// StartOn serves on an existing listener (for example one passed by
// systemd, or a Windows named pipe) in the background until Shutdown. The
// socket file is the listener's owner's: Shutdown leaves it in place, so
// that systemd can pass it to the next start.
func (s *Server) StartOn(ln net.Listener) error {
	if err := s.listenRemote(); err != nil {
		return err
	}
	s.ln = ln
	if path := ln.Addr().String(); path != "" {
		s.sockInfo, _ = os.Lstat(path)
		if err := s.SetAccess(s.cfg.Access); err != nil { // now with the socket's group
			return err
		}
	}
	s.log.Info("statebusd listening", "socket", ln.Addr().String(),
		"max_connections", s.cfg.MaxConnections)
	if p, err := park.New(); err == nil {
		s.parker = p
	} else {
		s.log.Debug("idle connections keep their reader goroutine", "err", err)
	}
	go s.acceptLoop()
	s.serveRemote()
	if s.cfg.HealthCheckInterval > 0 {
		s.handlers.Add(1)
		go s.monitor()
	}
	s.handlers.Add(1)
	go s.janitor()
	return nil
}

// Addr returns the socket path the server listens on.
func (s *Server) Addr() string { return s.cfg.SocketPath }

// Done is closed when Shutdown begins.
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) acceptLoop() {
	defer close(s.serveDone)
	s.serveErr = s.accept(s.ln, s.serveLocal)
}

// accept hands each connection ln accepts to serve until Shutdown, or
// until ln fails for good, which it returns.
func (s *Server) accept(ln net.Listener, serve func(net.Conn)) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				s.log.Error("listener closed; no longer accepting", "listener", ln.Addr().String(), "err", err)
				return err
			}
			// Out of file descriptors or similar: back off, keep serving
			// the connections we have.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.done:
				return nil
			}
			continue
		}
		delay = 0
		serve(nc)
	}
}

// serveLocal serves a connection to the Unix socket, whose peer the
// kernel names.
func (s *Server) serveLocal(nc net.Conn) { s.open(s.newConn(nc)) }

// open admits a new connection whose peer is known and serves it on a
// goroutine of its own, or refuses it with the reason: too many
// connections, the access policy, the per-user limit.
func (s *Server) open(c *conn) {
	n := s.connCount.Add(1)
	if n > int64(s.cfg.MaxConnections) {
		s.connCount.Add(-1)
		s.warns.warn(s.log, "too_many_connections", "", "connection refused: too many connections", "limit", s.cfg.MaxConnections)
		go refuse(c.nc, protocol.TooManyConnections(s.cfg.MaxConnections).Text)
		return
	}
	s.notePeak(n)
	if err := s.access.Load().MayConnect(c.peer()); err != nil {
		s.connCount.Add(-1)
		s.warns.warn(s.log, "refused", c.warnKey(), "connection refused", c.logArgs("reason", err, "gid", c.gid)...)
		go refuse(c.nc, protocol.Wire(err).Text)
		return
	}
	c.rule = s.access.Load().Rule(c.peer())
	if err := s.admit(c); err != nil {
		s.connCount.Add(-1)
		go refuse(c.nc, protocol.Wire(err).Text)
		return
	}
	go s.handle(c)
}

// peerKey is what MaxConnectionsPerUID counts connections by: a local
// user, or a certificate's name.
type peerKey struct {
	uid  int
	cert string
}

// limitKey returns c's peerKey, and whether MaxConnectionsPerUID applies
// to c: to every certificate, and to every user but the service's own and
// root.
func (s *Server) limitKey(c *conn) (peerKey, bool) {
	if c.cert != nil {
		return peerKey{uid: -1, cert: c.cert.Name}, true
	}
	return peerKey{uid: c.uid}, s.uidLimited(c.uid)
}

// uidLimited reports whether MaxConnectionsPerUID applies to uid: not to
// the service's own user nor root, and not where there are no uids.
func (s *Server) uidLimited(uid int) bool {
	return uid > 0 && uid != os.Geteuid()
}

// admit adds c to the live connections unless the service is stopping or
// c's user is at MaxConnectionsPerUID.
func (s *Server) admit(c *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return protocol.ErrShuttingDown.New("")
	default:
	}
	if k, limited := s.limitKey(c); limited {
		if s.perPeer[k] >= s.cfg.MaxConnectionsPerUID {
			s.ctr.uidRefused.Add(1)
			s.warns.warn(s.log, "per_uid", c.warnKey(), "connection refused: user at MaxConnectionsPerUid",
				c.logArgs("limit", s.cfg.MaxConnectionsPerUID)...)
			return protocol.ErrLimit.New(strconv.Itoa(s.cfg.MaxConnectionsPerUID) +
				" connections per user (MaxConnectionsPerUid) for " + c.peer().String() + "; close one first")
		}
		s.perPeer[k]++
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	return nil
}

// refuse writes one error line to a connection that will not be served
// and closes it.
func refuse(nc net.Conn, text string) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(protocol.AppendError(nil, text, nil))
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && nc.RemoteAddr().Network() == "tcp" && cw.CloseWrite() == nil {
		// Closing a TCP connection with input unread resets it, and a
		// reset may destroy the line before the peer reads it: say we are
		// done, and read what the peer still sends for a moment first.
		nc.SetReadDeadline(time.Now().Add(time.Second))
		io.CopyN(io.Discard, nc, 64<<10)
	}
	nc.Close()
}

// handle serves c on the calling goroutine until it ends or its reader
// parks; then ended runs on the goroutine that ends it.
func (s *Server) handle(c *conn) { c.start() }

// ended takes a connection that ended out of the server.
func (s *Server) ended(c *conn) {
	defer s.handlers.Done()
	s.mu.Lock()
	delete(s.conns, c)
	if k, limited := s.limitKey(c); limited {
		if s.perPeer[k]--; s.perPeer[k] <= 0 {
			delete(s.perPeer, k)
		}
	}
	s.retire(c)
	s.mu.Unlock()
	s.connCount.Add(-1)
}

// Shutdown stops accepting, lets every connection's queued lines be
// written (up to ShutdownTimeout or ctx, whichever ends first), closes the
// connections and removes the socket. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.ln != nil {
			s.ln.Close()
		}
		s.closeRemote()
	})
	if s.ln != nil {
		<-s.serveDone
	}
	s.remoteLoops.Wait()
	s.mu.Lock()
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()

	waited := make(chan struct{})
	go func() { s.handlers.Wait(); close(waited) }()
	var err error
	select {
	case <-waited:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.conns {
			c.abort()
		}
		s.mu.Unlock()
		<-waited
	}
	s.parker.Close() // no connection is left to park
	if s.ownsSocket {
		removeSocket(s.cfg.SocketPath, s.sockInfo)
		s.ownsSocket = false
	}
	if s.dur != nil {
		s.dur.Close()
	}
	if err == nil {
		err = s.serveErr
	}
	return err
}

// Health returns the service's health status.
func (s *Server) Health() Health {
	healthy := true
	select {
	case <-s.done:
		healthy = false
	case <-s.serveDone:
		healthy = false
	default:
	}
	return Health{
		IsHealthy:          healthy,
		ConnectionCount:    int(s.connCount.Load()),
		RegisteredMachines: s.routes.Len(),
		LastActivityAt:     time.Unix(0, s.lastActivity.Load()).UTC(),
	}
}

// Machines returns the registry: every registered machine id with what
// its client claimed and what the kernel says about the connection.
func (s *Server) Machines() []router.Info { return s.routes.Snapshot() }

// monitor logs the health status every HealthCheckInterval and warns on a
// long silence and on connections near the limit.
func (s *Server) monitor() {
	defer s.handlers.Done()
	t := time.NewTicker(s.cfg.HealthCheckInterval)
	defer t.Stop()
	// idleWarned: this idle period has had its warning. Later health
	// ticks of the same period say it at Info, so an idle bus does not
	// fill `journalctl -p warning`; activity starts a new period.
	idleWarned := false
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		h := s.Health()
		s.log.Info("health", "healthy", h.IsHealthy, "connections", h.ConnectionCount,
			"machines", h.RegisteredMachines, "last_activity", h.LastActivityAt)
		switch idle := time.Since(h.LastActivityAt); {
		case idle < s.cfg.IdleWarning:
			idleWarned = false
		case !idleWarned:
			idleWarned = true
			s.log.Warn("no activity", "for", idle.Round(time.Second))
		default:
			s.log.Info("no activity", "for", idle.Round(time.Second))
		}
		if h.ConnectionCount*5 > s.cfg.MaxConnections*4 {
			s.log.Warn("connections above 80% of MaxConnections",
				"connections", h.ConnectionCount, "limit", s.cfg.MaxConnections)
		}
	}
}
