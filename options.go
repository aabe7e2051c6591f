package statebus

import (
	"os"
	"path/filepath"
	"time"

	"github.com/statebus/statebus/protocol"
)

// Option configures a Client in Dial.
type Option func(*options)

type options struct {
	pipeName     string
	dialTimeout  time.Duration
	processName  string
	errorHandler func(error)
	stateHandler func(StateChange)
	maxQueue     int

	reconnect     bool
	waitReconnect bool
	backoffMin    time.Duration
	backoffMax    time.Duration
}

func defaultOptions() options {
	name := os.Getenv("STATEBUS_PIPE_NAME")
	if name == "" {
		name = protocol.DefaultPipeName
	}
	return options{
		pipeName:    name,
		dialTimeout: 5 * time.Second,
		processName: filepath.Base(os.Args[0]),
		maxQueue:    4 << 20,
		reconnect:   true,
		backoffMin:  50 * time.Millisecond,
		backoffMax:  5 * time.Second,
	}
}

// WithPipeName sets the pipe name (or absolute socket path) of the service.
// The default is $STATEBUS_PIPE_NAME, else "XStateNet.MessageBus".
func WithPipeName(name string) Option {
	return func(o *options) { o.pipeName = name }
}

// WithDialTimeout bounds how long Dial waits to connect, register and
// subscribe (default 5s, as the .NET client).
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithProcessName sets the process name sent in Register (default: the
// program's file name).
func WithProcessName(name string) Option {
	return func(o *options) { o.processName = name }
}

// WithErrorHandler receives errors that belong to no call: the service's
// refusal of a PostEvent, or the connection's loss. It runs on the
// client's dispatch goroutine, in order with event handlers.
func WithErrorHandler(h func(error)) Option {
	return func(o *options) { o.errorHandler = h }
}

// WithMaxQueueBytes bounds the bytes waiting to be written to the service;
// senders beyond it wait (default 4 MiB).
func WithMaxQueueBytes(n int) Option {
	return func(o *options) { o.maxQueue = n }
}

// WithReconnect turns reconnection on or off (default on). When on, a lost
// connection is dialled again with exponential backoff and jitter, the id
// is registered and subscribed again, and handlers are kept. When off, the
// client stops for good on the loss.
func WithReconnect(on bool) Option {
	return func(o *options) { o.reconnect = on }
}

// WithReconnectBackoff sets the first and the largest delay between
// reconnection attempts (default 50ms and 5s); each attempt waits a random
// time up to the current delay, which doubles up to max.
func WithReconnectBackoff(first, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = max2(first, time.Millisecond), max2(max, first) }
}

func max2(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// WithWaitForReconnect makes calls made while disconnected wait for the
// reconnection up to their context's deadline, instead of failing at once
// with ErrNotConnected.
func WithWaitForReconnect() Option {
	return func(o *options) { o.waitReconnect = true }
}

// WithStateHandler receives the client's connection state changes
// (Disconnected, Reconnected). It runs on the dispatch goroutine, in order
// with event handlers.
func WithStateHandler(h func(StateChange)) Option {
	return func(o *options) { o.stateHandler = h }
}

// State is a client's connection state.
type State int

const (
	// Disconnected: the connection was lost; the client is reconnecting.
	Disconnected State = iota
	// Reconnected: a new connection is registered and subscribed.
	Reconnected
)

func (s State) String() string {
	if s == Reconnected {
		return "reconnected"
	}
	return "disconnected"
}

// StateChange reports a change of connection state.
type StateChange struct {
	State State
	// Err is why the connection was lost (Disconnected).
	Err error
	// Attempt is how many attempts the reconnection took (Reconnected).
	Attempt int
}
