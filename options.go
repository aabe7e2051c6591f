package statebus

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus/protocol"
)

// Option configures a Client in Dial.
type Option func(*options)

type options struct {
	pipeName      string
	url           string      // WithURL; "" for the pipe
	tlsConfig     *tls.Config // for a tls:// URL
	tlsFiles      [3]string   // CA, certificate and key files, when tlsConfig is nil
	dialTimeout   time.Duration
	processName   string
	errorHandler  func(error)
	statusHandler func(StatusChange)
	maxQueue      int
	maxMessage    int
	pendingMsgs   int
	pendingBytes  int
	serverUIDs    []int
	err           error           // a bad setting, reported by Dial
	handlers      []func(*Client) // WithHandler, WithRequestHandler: installed before Dial registers
	holder        bool            // Connect: no id of its own, only identities; reconnects

	reconnect     bool
	waitReconnect bool
	durable       bool // WithDurable
	manualAck     bool // WithManualAck
	backoffMin    time.Duration
	backoffMax    time.Duration

	tracer trace.Tracer // WithTracerProvider; nil: no tracing

	framing Framing // WithFraming
}

// The defaults of the limits.
const (
	// DefaultMaxMessageBytes is the service's default MaxMessageBytes.
	DefaultMaxMessageBytes = 1 << 20
	// DefaultPendingEvents and DefaultPendingBytes bound what waits for the
	// client's handlers (as nats.go's defaults).
	DefaultPendingEvents = 65536
	DefaultPendingBytes  = 64 << 20
)

func defaultOptions() options {
	name := os.Getenv("STATEBUS_PIPE_NAME")
	if name == "" {
		name = protocol.DefaultPipeName
	}
	o := options{
		pipeName:     name,
		url:          os.Getenv("STATEBUS_URL"),
		tlsFiles:     [3]string{os.Getenv("STATEBUS_TLS_CA"), os.Getenv("STATEBUS_TLS_CLIENT_CERT"), os.Getenv("STATEBUS_TLS_CLIENT_KEY")},
		dialTimeout:  5 * time.Second,
		processName:  filepath.Base(os.Args[0]),
		maxQueue:     4 << 20,
		maxMessage:   DefaultMaxMessageBytes,
		pendingMsgs:  DefaultPendingEvents,
		pendingBytes: DefaultPendingBytes,
		serverUIDs:   trustedUIDs(os.Geteuid()),
		reconnect:    true,
		backoffMin:   50 * time.Millisecond,
		backoffMax:   5 * time.Second,
	}
	if v := os.Getenv("STATEBUS_SERVER_UID"); v != "" {
		uid, err := strconv.Atoi(v)
		if err != nil || uid < 0 {
			o.err = fmt.Errorf("statebus: STATEBUS_SERVER_UID=%q is not a user id (a number such as 0 or 1000)", v)
		} else {
			o.serverUIDs = trustedUIDs(uid)
		}
	}
	return o
}

// trustedUIDs is root and uid: root can act as any user anyway.
func trustedUIDs(uid int) []int {
	if uid == 0 || uid < 0 {
		return []int{0}
	}
	return []int{0, uid}
}

// WithPipeName sets the pipe name (or absolute socket path) of the service.
// The default is $STATEBUS_PIPE_NAME, else "XStateNet.MessageBus". It
// overrides a URL (WithURL, $STATEBUS_URL) set before it.
func WithPipeName(name string) Option {
	return func(o *options) { o.pipeName, o.url = name, "" }
}

// WithDialTimeout bounds each connection attempt as a whole: connecting,
// registering, subscribing and setting up groups and watches again
// (default 5s, as the .NET client). It also bounds the service's answer to
// what Close and a watch's stop send on their own.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithProcessName sets the process name sent in Register (default: the
// program's file name).
func WithProcessName(name string) Option {
	return func(o *options) { o.processName = name }
}

// WithErrorHandler receives errors that belong to no call: the service's
// refusal of a PostEvent, a group or watch the service refused to set up
// again after a reconnect, a refused reconnection (an untrusted server),
// and *SlowConsumerError when handlers fall behind. It runs on the
// client's dispatch goroutine, in order with event handlers.
func WithErrorHandler(h func(error)) Option {
	return func(o *options) { o.errorHandler = h }
}

// WithStatusHandler receives every change of the client's Status, in
// order: on the dispatch goroutine, after the events that arrived before
// the change.
func WithStatusHandler(h func(StatusChange)) Option {
	return func(o *options) { o.statusHandler = h }
}

// WithMaxQueueBytes bounds the bytes waiting to be written to the service;
// senders beyond it wait, up to their context (default 4 MiB).
func WithMaxQueueBytes(n int) Option {
	return func(o *options) { o.maxQueue = n }
}

// WithMaxMessageBytes sets the longest line the client writes (default 1
// MiB, the service's default MaxMessageBytes). An event or a request
// handler's reply that would be longer is refused before it is written,
// with ErrTooLarge: the service would discard it. Set it to the service's
// MaxMessageBytes when that differs. A client that sees the service refuse
// a line as too long lowers it to the service's limit by itself.
func WithMaxMessageBytes(n int) Option {
	return func(o *options) { o.maxMessage = n }
}

// WithPendingLimits bounds the events (and their payload bytes) received
// and not yet handled (default 65,536 events and 64 MiB). Beyond either,
// new events are dropped, counted (Client.Dropped) and reported to the
// error handler as a *SlowConsumerError, at most once a second; a request
// dropped this way is answered with an error at once. Zero or less means
// no limit of that kind.
func WithPendingLimits(events, bytes int) Option {
	return func(o *options) { o.pendingMsgs, o.pendingBytes = events, bytes }
}

// WithServerUID sets the user id that must serve the socket: on every
// connect and reconnect the client asks the kernel who serves it
// (SO_PEERCRED) and refuses anyone but uid and root with an
// *UntrustedServerError. The default is the client's own effective uid
// (and root), or $STATEBUS_SERVER_UID. Set it when statebusd runs as a
// user of its own (the packaged service, without socket activation).
// Windows does not check.
func WithServerUID(uid int) Option {
	return func(o *options) { o.serverUIDs = trustedUIDs(uid) }
}

// WithReconnect turns reconnection on or off (default on). When on, a lost
// connection is dialled again with exponential backoff and jitter, the id
// is registered and subscribed again, groups joined and watches installed
// again, and handlers are kept. When off, the client closes on the loss.
func WithReconnect(on bool) Option {
	return func(o *options) { o.reconnect = on }
}

// WithReconnectBackoff sets the first and the largest delay between
// reconnection attempts (default 50ms and 5s); each attempt waits a random
// time up to the current delay, which doubles up to max.
func WithReconnectBackoff(first, max time.Duration) Option {
	return func(o *options) {
		o.backoffMin = maxDuration(first, time.Millisecond)
		o.backoffMax = maxDuration(max, o.backoffMin)
	}
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// WithWaitForReconnect makes calls made while the client reconnects wait
// for the new connection up to their context's deadline, instead of
// failing at once with ErrNotConnected.
func WithWaitForReconnect() Option {
	return func(o *options) { o.waitReconnect = true }
}

// Framing is how a client's events travel to and from the service.
type Framing uint8

const (
	// FramingCompact (the default) asks the service, at Register, for the
	// compact framing: events, their acknowledgements and errors, and
	// requests and replies travel as length-prefixed binary frames
	// (docs/protocol.md, "Compact framing"); everything else stays JSON
	// lines. A service that does not offer it (the .NET service, an older
	// statebusd, or one with the framing turned off) is spoken to in JSON
	// lines, as with FramingJSON. Other clients see no difference: a JSON
	// client receives a compact client's events as JSON lines.
	FramingCompact Framing = iota
	// FramingJSON speaks only the JSON lines of the .NET clients.
	FramingJSON
)

// WithFraming selects the framing (default FramingCompact).
func WithFraming(f Framing) Option {
	return func(o *options) { o.framing = f }
}

// Framing returns the framing the client's connection speaks now:
// FramingCompact once the service accepted it, else FramingJSON (also
// while the client reconnects, or when it asked for JSON).
func (c *Client) Framing() Framing {
	if s := c.sess.Load(); s != nil && s.compact.Load() {
		return FramingCompact
	}
	return FramingJSON
}
