package statebus

import (
	"os"
	"path/filepath"
	"time"

	"statebus/protocol"
)

// Option configures a Client in Dial.
type Option func(*options)

type options struct {
	pipeName     string
	dialTimeout  time.Duration
	processName  string
	errorHandler func(error)
	maxQueue     int
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
