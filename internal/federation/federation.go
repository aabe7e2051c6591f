// Package federation makes statebusd one member of a federation of daemons
// that share one machine id space, on NATS as the engine. It owns:
//
//   - the NATS connection: to an in-process nats-server node that joins a
//     NATS cluster by routes (embedded mode) or to an existing cluster by
//     URL (external mode);
//   - the cluster-wide ownership of machine ids and the daemons' leases,
//     in JetStream key-value buckets (see Claim and docs/federation.md);
//   - the directory of where each id, group member and watch lives, kept
//     current by watching those buckets;
//   - the messages between daemons (events, requests, broadcasts, watch
//     copies and their answers) and the table of answers this daemon
//     waits for, each with a deadline, so that no sender waits for ever.
//
// It knows nothing of client connections: statebusd's server hands it what
// leaves this daemon and receives what arrives through a Handler.
package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Modes.
const (
	Embedded = "embedded"
	External = "external"
)

// DefaultLease outlasts a JetStream leader election (nats-server waits 4
// to 9 s before it elects another leader) plus a renewal period (a
// quarter lease): while a bucket has no leader no daemon can renew, and
// a shorter lease would make every daemon give up its ids when the node
// that led the lease bucket dies or is cut off.
const DefaultLease = 15 * time.Second

// Config is one daemon's federation settings.
type Config struct {
	// Mode is Embedded or External.
	Mode string
	// Name names the federation: every daemon of one federation uses the
	// same. It prefixes subjects and buckets, so that several federations
	// can share one NATS cluster.
	Name string
	// Node is this daemon's name, unique in the federation (default: the
	// host name). /machines shows it for each id.
	Node string
	// Host is shown beside Node (default: the host name).
	Host string

	// Embedded mode: the in-process nats-server's client address
	// (host:port; port 0 picks one), its route address, which the other
	// nodes' Routes name, the routes to the other nodes
	// (nats-route://host:port), and the JetStream store directory.
	ClientListen string
	RouteListen  string
	Routes       []string
	StoreDir     string
	// SyncAlways makes the embedded node flush (fsync) every JetStream
	// write before acknowledging it, SyncInterval (when not 0) every
	// interval instead of nats-server's default of two minutes. Durable
	// mailboxes set them from DurableSync (docs/durability.md); in
	// external mode the cluster's own setting applies.
	SyncAlways   bool
	SyncInterval time.Duration

	// External mode: the cluster's URLs, a credentials file, and TLS
	// files (CA to trust, client certificate and key).
	URLs        []string
	Credentials string
	TLSCA       string
	TLSCert     string
	TLSKey      string

	// Lease is how long a daemon's hold on its ids outlives its last
	// successful renewal; a daemon that dies or is cut off loses its ids
	// after at most Lease (renewed every Lease/4).
	Lease time.Duration
	// Replicas is how many NATS nodes keep the ownership buckets: 3
	// survives the loss of one node of three.
	Replicas int
	// AckTimeout bounds how long a cross-daemon event waits for its
	// acknowledgement before its sender gets an error.
	AckTimeout time.Duration
	// MaxInFlight bounds the answers this daemon waits for from others.
	MaxInFlight int
	// StartTimeout bounds Start: the cluster must form and the buckets be
	// ready within it.
	StartTimeout time.Duration
	Logger       *slog.Logger
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Defaults fills unset fields.
func (c *Config) Defaults() {
	host, _ := os.Hostname()
	if c.Name == "" {
		c.Name = "statebus"
	}
	if c.Host == "" {
		c.Host = host
	}
	if c.Node == "" {
		c.Node = strings.NewReplacer(".", "-").Replace(host)
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Replicas == 0 {
		c.Replicas = 1
		if c.Mode == Embedded {
			c.Replicas = min(3, 1+len(c.Routes))
		}
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1 << 16
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Mode != Embedded && c.Mode != External:
		return fmt.Errorf("config: Cluster must be off, embedded or external, not %q", c.Mode)
	case !tokenRE.MatchString(c.Name):
		return fmt.Errorf("config: ClusterName %q: use 1 to 64 letters, digits, '-' or '_'", c.Name)
	case !tokenRE.MatchString(c.Node):
		return fmt.Errorf("config: ClusterNode %q: use 1 to 64 letters, digits, '-' or '_' (set ClusterNode when the host name has others)", c.Node)
	case c.Mode == Embedded && c.RouteListen == "":
		return errors.New("config: Cluster embedded needs ClusterRouteListen, the host:port the other nodes' routes reach this one on")
	case c.Mode == Embedded && c.StoreDir == "":
		return errors.New("config: Cluster embedded needs ClusterStoreDir, where the node keeps its JetStream data")
	case c.Mode == External && len(c.URLs) == 0:
		return errors.New("config: Cluster external needs ClusterUrls, the NATS cluster's URLs")
	case c.Lease < time.Second:
		return fmt.Errorf("config: ClusterLeaseSeconds must be at least 1, not %v", c.Lease.Seconds())
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("config: ClusterReplicas must be 1 to 5, not %d", c.Replicas)
	}
	return nil
}

// Handler receives what other daemons send this one, in the order each
// sent it. It must not block for long: it runs on the subscription's one
// goroutine.
type Handler func(m *Msg)

// Node is this daemon's membership of the federation.
type Node struct {
	cfg    Config
	log    *slog.Logger
	ns     *natsserver.Server // embedded mode
	nc     *nats.Conn
	js     jetstream.JetStream
	ids    jetstream.KeyValue // id, group and watch records
	live   jetstream.KeyValue // daemon leases
	epoch  string             // this run of the daemon
	prefix string             // subject prefix
	inbox  *nats.Subscription
	handle atomic.Pointer[Handler]

	// leaseUntil is when this daemon's hold on its ids ends unless
	// renewed (unix nanoseconds, monotonic use only through time.Now).
	leaseUntil atomic.Int64
	lost       atomic.Pointer[func()] // called when the lease has lapsed

	dir     directory
	flight  inflight
	misses  misses
	Metrics Metrics

	done        chan struct{}
	watchCtx    context.Context // the bucket watches', canceled by Close
	stopWatches context.CancelFunc
	wg          sync.WaitGroup
	stop        sync.Once
}

// Metrics counts cross-daemon traffic.
type Metrics struct {
	Sent, Received       atomic.Uint64 // messages to and from other daemons
	SentBytes, RecvBytes atomic.Uint64
	Acked, Failed        atomic.Uint64 // messages answered, by outcome (an error or not)
	TimedOut             atomic.Uint64 // answers that never came in time
	// Lookups counts Find's reads of the buckets for an id the directory
	// did not know; LookupsSkipped the ones the bounds refused (see Find).
	Lookups, LookupsSkipped atomic.Uint64
}

// Start joins the federation: it starts the embedded node or connects to
// the cluster, makes sure the buckets exist, takes this daemon's lease
// and starts following the directory.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, done: make(chan struct{}),
		prefix: "statebus." + cfg.Name, epoch: newEpoch()}
	n.dir.init()
	n.flight.init()
	n.watchCtx, n.stopWatches = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := n.connect(ctx); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.setup(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Name returns this daemon's node name.
func (n *Node) Name() string { return n.cfg.Node }

// Host returns this daemon's host name.
func (n *Node) Host() string { return n.cfg.Host }

// SetHandler sets what receives messages from other daemons.
func (n *Node) SetHandler(h Handler) { n.handle.Store(&h) }

// OnLeaseLost sets what runs when this daemon's lease lapsed: every id it
// holds must be dropped, since other daemons may now claim them.
func (n *Node) OnLeaseLost(f func()) { n.lost.Store(&f) }

// Conn returns the connection to NATS, for other users of the
// federation's JetStream (durable mailboxes). They must not close it.
func (n *Node) Conn() *nats.Conn { return n.nc }

// Replicas returns how many NATS nodes keep each of the federation's
// JetStream streams and buckets.
func (n *Node) Replicas() int { return n.cfg.Replicas }

// ClusterName returns the federation's name, which prefixes its
// subjects, buckets and streams.
func (n *Node) ClusterName() string { return n.cfg.Name }

// StoreDir returns the embedded node's JetStream directory ("" in
// external mode).
func (n *Node) StoreDir() string {
	if n.cfg.Mode != Embedded {
		return ""
	}
	return n.cfg.StoreDir
}

// ClientURL returns the embedded node's client URL ("" in external mode),
// for tools such as nats bench to use the same cluster.
func (n *Node) ClientURL() string {
	if n.ns == nil {
		return ""
	}
	return n.ns.ClientURL()
}

// Close leaves the federation: this daemon's lease and the ids it still
// records are deleted, so others see them gone at once, and the NATS
// connection (and embedded node) stop.
func (n *Node) Close() {
	n.stop.Do(func() {
		close(n.done)
		n.stopWatches()
		n.wg.Wait()
		if n.live != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			n.live.Delete(ctx, n.liveKey(n.cfg.Node))
			cancel()
		}
		n.flight.failAll("", "this daemon left the federation")
		if n.nc != nil {
			n.nc.Drain()
			n.nc.Close()
		}
		if n.ns != nil {
			n.ns.Shutdown()
			n.ns.WaitForShutdown()
		}
	})
}

// Crash stops the node as a crash would (tests): no deletes, no drain;
// others learn of it when the lease lapses.
func (n *Node) Crash() {
	n.stop.Do(func() {
		close(n.done)
		n.stopWatches()
		if n.nc != nil {
			n.nc.Close()
		}
		n.wg.Wait()
		n.flight.failAll("", "this daemon left the federation")
		if n.ns != nil {
			n.ns.Shutdown()
			n.ns.WaitForShutdown()
		}
	})
}
