// Package durable owns statebusd's durable mailboxes: the events stored
// for machine ids declared durable, kept on disk until they are processed
// and then for as long as their retention allows. It owns
//
//   - the storage engine: JetStream's file store, in an nats-server that
//     runs inside statebusd with no network listener, reached through an
//     in-process connection (see docs/durability.md for why);
//   - group commit: events appended while one write is being made stable
//     are written together in the next one, one JetStream message per
//     mailbox per round, so one fsync serves many events;
//   - each mailbox's sequence numbers, its acknowledged position, its
//     retention (age, events, bytes) and the dead letters it produced;
//   - delivery: a pump per attached subscriber that sends stored events
//     in order from its last acknowledged sequence, then live ones;
//   - recovery: at Open the mailboxes are rebuilt from the store's
//     headers; a torn tail is truncated by the file store;
//   - across daemons (Config.Shared): the same mailboxes in a replicated
//     stream of a federation's JetStream, appended by every daemon with
//     optimistic concurrency and followed by each (shared.go).
//
// It knows nothing of sockets: statebusd's server appends, attaches
// subscribers and receives the outcome of every append through callbacks.
package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SyncPolicy says when an event counts as stored.
type SyncPolicy string

// The sync policies.
const (
	// SyncAlways (the default): an event is acknowledged only after the
	// write holding it was flushed to stable storage (fsync). Events
	// that arrive during one flush share the next one (group commit).
	SyncAlways SyncPolicy = "always"
	// SyncInterval: an event is acknowledged once it was written to the
	// operating system; the store is flushed every SyncInterval. It
	// survives a crash of statebusd but not of the machine: up to
	// SyncInterval of acknowledged events can be lost on power loss.
	SyncInterval SyncPolicy = "interval"
)

// Retention bounds what one mailbox keeps. Acknowledged events stay
// (for replay) until a limit needs their room; unacknowledged events are
// never dropped to make room: a full mailbox refuses new events, and an
// unacknowledged event older than MaxAge goes to the dead letters.
type Retention struct {
	// MaxAge is how long an event is kept.
	MaxAge time.Duration
	// MaxEvents and MaxBytes bound the events a mailbox keeps (event
	// bytes as sent).
	MaxEvents int64
	MaxBytes  int64
}

// Config is the durable store's configuration. Start from DefaultConfig.
type Config struct {
	// Dir is where the store lives (JetStream's store directory). With
	// Shared it only names the disk that diagnostics look at.
	Dir string
	// Shared, when set, keeps the mailboxes in a NATS cluster's
	// JetStream (a federation's) instead of an nats-server of the
	// store's own: see Shared.
	Shared *Shared
	// Sync is the durability policy; SyncInterval is the flush interval
	// of SyncInterval (ignored by SyncAlways).
	Sync         SyncPolicy
	SyncInterval time.Duration
	// Retention applies to every mailbox.
	Retention Retention
	// MaxMailboxes bounds the durable mailboxes; MaxMailboxesPerUID
	// bounds those one limited user declares (0: no per-user limit).
	MaxMailboxes       int
	MaxMailboxesPerUID int
	// MaxDeliveries is how many times a subscriber may refuse an event
	// before it goes to the dead letters.
	MaxDeliveries int
	// MaxDeadLetters bounds the dead letters kept; past it the oldest is
	// deleted (counted and logged).
	MaxDeadLetters int
	// MaxStoreBytes bounds the whole store on disk; past it appends fail.
	MaxStoreBytes int64
	// MaxPendingBytes bounds the events appended but not yet stored;
	// past it Append waits (the sender is slowed down) up to
	// PendingTimeout.
	MaxPendingBytes int
	PendingTimeout  time.Duration
	// MaxBatchBytes bounds one mailbox's write in one round.
	MaxBatchBytes int
	// Logger receives the store's logs. Nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults statebusd uses.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:          dir,
		Sync:         SyncAlways,
		SyncInterval: time.Second,
		Retention: Retention{
			MaxAge:    24 * time.Hour,
			MaxEvents: 100_000,
			MaxBytes:  64 << 20,
		},
		MaxMailboxes:       1024,
		MaxMailboxesPerUID: 64,
		MaxDeliveries:      5,
		MaxDeadLetters:     10_000,
		MaxStoreBytes:      4 << 30,
		MaxPendingBytes:    8 << 20,
		PendingTimeout:     5 * time.Second,
		MaxBatchBytes:      4 << 20,
	}
}

// Validate reports the first field that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "" && c.Shared == nil:
		return errors.New("durable: DurableDir is empty")
	case c.Shared != nil && (c.Shared.Conn == nil || c.Shared.Replicas < 1 || c.Shared.Replicas > 5 || !nameRE.MatchString(c.Shared.Name)):
		return fmt.Errorf("durable: Shared needs a connection, 1 to 5 replicas and a name of letters, digits, '-' or '_', not %d replicas and %q", c.Shared.Replicas, c.Shared.Name)
	case c.Sync != SyncAlways && c.Sync != SyncInterval:
		return fmt.Errorf("durable: DurableSync must be %q or %q, not %q", SyncAlways, SyncInterval, c.Sync)
	case c.Sync == SyncInterval && c.SyncInterval <= 0:
		return fmt.Errorf("durable: DurableSyncInterval must be positive, not %v", c.SyncInterval)
	case c.Retention.MaxAge <= 0 || c.Retention.MaxEvents < 1 || c.Retention.MaxBytes < 1024:
		return fmt.Errorf("durable: retention needs MaxAge > 0, MaxEvents >= 1 and MaxBytes >= 1024, not %+v", c.Retention)
	case c.MaxMailboxes < 1:
		return fmt.Errorf("durable: DurableMaxMailboxes must be at least 1, not %d", c.MaxMailboxes)
	case c.MaxDeliveries < 1:
		return fmt.Errorf("durable: DurableMaxDeliveries must be at least 1, not %d", c.MaxDeliveries)
	case c.MaxDeadLetters < 0:
		return fmt.Errorf("durable: DurableMaxDeadLetters must not be negative, not %d", c.MaxDeadLetters)
	case c.MaxStoreBytes < 1<<20:
		return fmt.Errorf("durable: DurableMaxStoreBytes must be at least 1 MiB, not %d", c.MaxStoreBytes)
	case c.MaxPendingBytes < 1<<16 || c.MaxBatchBytes < 1<<16:
		return fmt.Errorf("durable: MaxPendingBytes and MaxBatchBytes must be at least 64 KiB")
	case c.PendingTimeout <= 0:
		return fmt.Errorf("durable: PendingTimeout must be positive, not %v", c.PendingTimeout)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// The store's errors. Their texts are what senders see.
var (
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("durable store is closed")
	// ErrBusy: appends wait for PendingTimeout without room.
	ErrBusy = errors.New("durable store is not keeping up; try again later")
	// ErrNoMailbox: no such durable mailbox.
	ErrNoMailbox = errors.New("no such durable mailbox")
)

// FullError says a mailbox or the store has no room.
type FullError struct{ Text string }

func (e *FullError) Error() string { return e.Text }

// StoreError wraps a failure of the storage engine to store events
// (disk full, I/O error): nothing of the failed write was acknowledged.
// With Restart the engine stopped storing: the store tries to start it
// again while the disk has room (heal), else statebusd must be restarted. With Cluster the shared store (a
// federation's JetStream) failed or did not answer: the write may still
// have been stored.
type StoreError struct {
	Err     error
	Restart bool
	Cluster bool
}

func (e *StoreError) Error() string {
	switch {
	case e.Restart:
		return "durable store cannot store the event (" + e.Err.Error() + "); free disk space or check the store's disk, then send again (the store stores again by itself once the disk has room; if it does not, restart statebusd)"
	case e.Cluster:
		return "durable store cannot confirm the event was stored (" + e.Err.Error() + "); it may have been: send again once the federation's JetStream has a quorum of its nodes"
	}
	return "durable store cannot store the event (" + e.Err.Error() + "); free disk space or check the store's disk, then send again"
}
func (e *StoreError) Unwrap() error { return e.Err }

// Subscriber receives a mailbox's events. Deliver queues one event and
// may block while the subscriber's queue is full; it returns an error
// when the subscriber cannot take it (gone, or full for too long: the
// pump tries again).
type Subscriber interface {
	Deliver(mailbox string, seq uint64, event []byte, rewound bool) error
}

// Stored is the outcome of one round for one mailbox: events First,
// First+1, ... were stored (Err nil) for the appends whose tags are Tags.
type Stored[T any] struct {
	Mailbox string
	First   uint64
	Tags    []T
	Err     error
}

// Stream names and subject prefixes of a store of its own; a shared
// store adds the federation's name (namesFor).
const (
	dataStream  = "STATEBUS_DURABLE"
	stateStream = "STATEBUS_DURABLE_STATE"
	subjData    = "sbd."
	subjEvents  = "m."
	subjDead    = "d."
	subjState   = "sbs."
)

// Header names.
const (
	hdrFirst  = "Sb-First"
	hdrCount  = "Sb-N"
	hdrSeq    = "Sb-Seq"
	hdrReason = "Sb-Reason"
	hdrBytes  = "Sb-Bytes"
)

// names are a store's streams and subject prefixes.
type names struct {
	data, state          string // streams
	events, dead, stateP string // subject prefixes
	dataAll              string // the event stream's subjects
}

func namesFor(sh *Shared) names {
	p, suffix := "", ""
	if sh != nil {
		p, suffix = "statebus."+sh.Name+".", "_"+sh.Name
	}
	return names{data: dataStream + suffix, state: stateStream + suffix, events: p + subjData + subjEvents,
		dead: p + subjData + subjDead, stateP: p + subjState, dataAll: p + subjData + ">"}
}

// Store is an open durable store. T is what the caller tags each append
// with; it gets the tags back in OnStored.
type Store[T any] struct {
	cfg      Config
	log      *slog.Logger
	onStored func([]Stored[T])

	n      names
	ns     *natsserver.Server // nil when Shared
	nc     *nats.Conn
	js     jetstream.JetStream
	data   jetstream.Stream
	state  jetstream.Stream
	ctx    context.Context
	cancel context.CancelFunc

	boxes atomic.Pointer[map[string]*Mailbox[T]] // copy on write, under mu

	mu        sync.Mutex
	work      chan struct{} // 1-slot: the committer has work
	room      chan struct{} // closed and replaced when pending room frees
	dirty     []*Mailbox[T] // mailboxes with pending events or state
	pendBytes int
	perUID    map[int]int
	dead      []deadLetter
	closed    bool
	broken    error         // the engine stopped storing: appends fail at once
	stop      chan struct{} // closed by Close: the janitor and pumps stop
	wg        sync.WaitGroup

	follow  followers // Shared: what other daemons write
	healing healing   // the engine stopped: see heal

	ctr Counters
}

// Counters are the store's running totals.
type Counters struct {
	Stored       atomic.Uint64 // events stored
	Rounds       atomic.Uint64 // group-commit rounds
	Delivered    atomic.Uint64 // events handed to subscribers
	Failed       atomic.Uint64 // appends that failed
	DeadLettered atomic.Uint64 // events moved to dead letters
	DeadDropped  atomic.Uint64 // dead letters deleted past MaxDeadLetters
	Conflicts    atomic.Uint64 // Shared: writes another daemon's write came before (written again)
}

// Open starts the storage engine in cfg.Dir, rebuilds the mailboxes from
// what it holds and starts the committer.
func Open[T any](cfg Config, onStored func([]Stored[T])) (*Store[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Shared == nil {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("durable: cannot create the store directory %s: %w", cfg.Dir, err)
		}
	} else if m := int(cfg.Shared.Conn.MaxPayload()) - 64<<10; cfg.MaxBatchBytes > m {
		cfg.MaxBatchBytes = max(m, 1<<10) // a round's write is one NATS message
	}
	s := &Store[T]{cfg: cfg, log: log, onStored: onStored, work: make(chan struct{}, 1),
		room: make(chan struct{}), perUID: map[int]int{}, stop: make(chan struct{}), n: namesFor(cfg.Shared)}
	s.follow.applied = make(chan struct{}, 1)
	s.boxes.Store(&map[string]*Mailbox[T]{})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.start(); err != nil {
		s.shutdownEngine()
		return nil, err
	}
	from, err := s.recover()
	if err != nil {
		s.shutdownEngine()
		return nil, err
	}
	if cfg.Shared != nil {
		if err := s.startFollowing(from); err != nil {
			s.shutdownEngine()
			return nil, err
		}
	}
	s.wg.Add(2)
	go s.committer()
	go s.janitor()
	return s, nil
}

// start runs the embedded nats-server (or takes the shared connection)
// and creates (or opens) the streams.
func (s *Store[T]) start() error {
	if s.cfg.Shared != nil {
		// A cluster that just formed (or is loaded) may take a while to
		// place replicated streams: try again, as the federation waits
		// for its buckets.
		s.nc = s.cfg.Shared.Conn
		deadline := time.Now().Add(sharedStartTimeout)
		for {
			err := s.openStreams(s.cfg.Shared.Replicas, "the federation's JetStream", 5*time.Second)
			if err == nil || time.Now().After(deadline) {
				return err
			}
			s.log.Info("durable store: waiting for the federation's JetStream", "err", err)
			select {
			case <-time.After(500 * time.Millisecond):
			case <-s.ctx.Done():
				return err
			}
		}
	}
	opts := &natsserver.Options{
		ServerName:         "statebusd-durable",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           s.cfg.Dir,
		JetStreamMaxStore:  s.cfg.MaxStoreBytes + 64<<20,
		JetStreamMaxMemory: 64 << 20,
		MaxPayload:         int32(s.cfg.MaxBatchBytes + 1<<20),
		NoSigs:             true,
		NoLog:              true,
	}
	if s.cfg.Sync == SyncAlways {
		opts.SyncAlways = true
	} else {
		opts.SyncInterval = s.cfg.SyncInterval
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return fmt.Errorf("durable: storage engine: %w", err)
	}
	s.ns = ns
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("durable: storage engine did not start within 30s (store %s)", s.cfg.Dir)
	}
	if !ns.JetStreamEnabled() {
		return fmt.Errorf("durable: storage engine could not open the store in %s; check that it is writable and has free space", s.cfg.Dir)
	}
	s.healing.cfg = *ns.JetStreamConfig()
	s.healing.cfg.StoreDir = s.cfg.Dir // EnableJetStream adds "jetstream" itself
	s.nc, err = nats.Connect("", nats.InProcessServer(ns), nats.Name("statebusd durable"),
		nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("durable: storage engine connection: %w", err)
	}
	return s.openStreams(1, s.cfg.Dir, 30*time.Second)
}

// sharedStartTimeout bounds how long Open waits for a shared store's
// streams.
const sharedStartTimeout = 2 * time.Minute

// openStreams creates (or opens) the event and state streams, replicas
// copies each, within timeout; where names the store in errors.
func (s *Store[T]) openStreams(replicas int, where string, timeout time.Duration) error {
	var err error
	s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	s.data, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: s.n.data, Subjects: []string{s.n.dataAll}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew, MaxBytes: s.cfg.MaxStoreBytes,
		Replicas: replicas, MaxMsgSize: int32(s.cfg.MaxBatchBytes + 1<<20), AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("durable: cannot open stream %s in %s: %w", s.n.data, where, err)
	}
	s.state, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: s.n.state, Subjects: []string{s.n.stateP + ">"}, Storage: jetstream.FileStorage,
		MaxMsgsPerSubject: 1, Replicas: replicas, AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("durable: cannot open stream %s in %s: %w", s.n.state, where, err)
	}
	return nil
}

// Close stops the committer (after the round in flight: appended events
// not yet written fail with ErrClosed), the pumps and the engine.
func (s *Store[T]) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, mb := range *s.boxes.Load() {
		mb.detachLocked()
	}
	close(s.room)
	close(s.stop)
	s.mu.Unlock()
	s.kick()
	s.wg.Wait()
	s.stopFollowing()
	s.cancel()
	s.shutdownEngine()
	return nil
}

func (s *Store[T]) shutdownEngine() {
	if s.cfg.Shared != nil {
		return // the connection is the federation's
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// Counters returns the store's running totals.
func (s *Store[T]) Counters() *Counters { return &s.ctr }

// Dir returns where the store lives.
func (s *Store[T]) Dir() string { return s.cfg.Dir }

// Policy returns the sync policy.
func (s *Store[T]) Policy() SyncPolicy { return s.cfg.Sync }

func (s *Store[T]) kick() {
	select {
	case s.work <- struct{}{}:
	default:
	}
}

// BlockFiles returns the data stream's block files, oldest first (for
// tests and backups: docs/durability.md).
func (s *Store[T]) BlockFiles() ([]string, error) {
	return BlockFiles(s.cfg.Dir)
}

// BlockFiles lists the event stream's block files in a store directory.
func BlockFiles(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", dataStream, "msgs", "*.blk"))
	if err != nil {
		return nil, err
	}
	// Block files are numbered; order by number.
	num := func(p string) int {
		n, _ := strconv.Atoi(trimExt(filepath.Base(p)))
		return n
	}
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && num(m[j]) < num(m[j-1]); j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
	return m, nil
}

func trimExt(s string) string {
	if i := len(s) - len(filepath.Ext(s)); i >= 0 {
		return s[:i]
	}
	return s
}
