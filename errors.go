package statebus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/statebus/statebus/protocol"
)

// Errors a Client returns. Errors the service reports are *protocol.Error
// values that wrap one of the protocol kinds re-exported here, so
// errors.Is(err, statebus.ErrTargetNotConnected) works.
var (
	// ErrNotConnected: the client has no connection at the moment. It is
	// reconnecting (a call made meanwhile fails at once, unless
	// WithWaitForReconnect), or the connection a call was made on was lost
	// before its answer came (the call may or may not have taken effect).
	// A *DialError matches it too.
	ErrNotConnected = errors.New("statebus: not connected")
	// ErrClosed: the client is closed for good, by Close or Drain, or
	// because its connection was lost and it does not reconnect. Err says
	// why.
	ErrClosed = errors.New("statebus: client closed")
	// ErrUntrustedServer: the process that serves the socket runs as a
	// user the client does not trust (see WithServerUID). The error is an
	// *UntrustedServerError.
	ErrUntrustedServer = errors.New("statebus: untrusted server")

	// ErrTargetNotConnected: no connection is subscribed for the target.
	ErrTargetNotConnected error = protocol.ErrTargetNotConnected
	// ErrIDInUse: another live connection holds the machine id.
	ErrIDInUse error = protocol.ErrIDInUse
	// ErrNotOwner: the client used a machine id it does not hold.
	ErrNotOwner error = protocol.ErrNotOwner
	// ErrDeliveryFailed: the target went away before the event was written
	// to it.
	ErrDeliveryFailed error = protocol.ErrDeliveryFailed
	// ErrNoResponder: a request's target is not connected, or went away
	// before it replied.
	ErrNoResponder error = protocol.ErrNoResponder
	// ErrResponder: a request's responder answered with an error; the
	// error is a *ResponderError that carries the responder's own text.
	ErrResponder error = protocol.ErrResponder
	// ErrSlowConsumer: a receiver does not keep up. From the service: the
	// target did not read its events in time. From this client (a
	// *SlowConsumerError given to the error handler): its handlers fell
	// behind, its pending limit was reached and events were dropped.
	ErrSlowConsumer error = protocol.ErrSlowConsumer
	// ErrTooLarge: a line is longer than the service accepts (its
	// MaxMessageBytes). The client refuses such events and replies itself,
	// before writing them (see WithMaxMessageBytes).
	ErrTooLarge error = protocol.ErrTooLarge
	// ErrLimit: the service's per-connection limit was reached; the text
	// names the limit and its setting.
	ErrLimit error = protocol.ErrLimit
	// ErrAccessDenied: the service's access rules do not allow it.
	ErrAccessDenied error = protocol.ErrAccessDenied
	// ErrFederation: the service is a member of a federation of daemons
	// (MessageBus:Cluster) and cannot reach it now, for example from the
	// minority side of a network partition; retry later.
	ErrFederation error = protocol.ErrFederation
)

// DialError says why Dial could not reach the service. It matches
// ErrNotConnected with errors.Is.
type DialError struct {
	Path string
	Err  error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("statebus: cannot connect to %s: is statebusd running? (%v)", e.Path, e.Err)
}

// Unwrap returns ErrNotConnected and the cause.
func (e *DialError) Unwrap() []error { return []error{ErrNotConnected, e.Err} }

// UntrustedServerError is returned when the socket is served by a user
// the client does not trust: on a world-writable path such as /tmp, any
// user can bind the socket before statebusd does and receive, and forge,
// everyone's events. It matches ErrUntrustedServer.
type UntrustedServerError struct {
	// Path is the socket.
	Path string
	// UID is the user id the kernel reports for the process serving it
	// (SO_PEERCRED).
	UID int
	// Trusted are the user ids the client accepts.
	Trusted []int
}

func (e *UntrustedServerError) Error() string {
	want := make([]string, len(e.Trusted))
	for i, u := range e.Trusted {
		want[i] = strconv.Itoa(u)
	}
	return fmt.Sprintf("statebus: refusing server on %s: the socket is served by uid %d, expected %s; "+
		"another user may be impersonating statebusd (if uid %d runs your statebusd, trust it with WithServerUID(%d) or STATEBUS_SERVER_UID=%d)",
		e.Path, e.UID, strings.Join(want, " or "), e.UID, e.UID, e.UID)
}

// Is reports whether target is ErrUntrustedServer.
func (e *UntrustedServerError) Is(target error) bool { return target == ErrUntrustedServer }

// ResponderError is the error of a Request whose responder returned an
// error. Message is the responder's own text; Error returns the text as
// the service sent it ("Responder error: " and Message). It matches
// ErrResponder, and errors.As finds the *protocol.Error it wraps.
type ResponderError struct {
	Message string
	wire    *protocol.Error
}

func (e *ResponderError) Error() string { return e.wire.Text }

// Unwrap returns the wire error, whose kind is ErrResponder.
func (e *ResponderError) Unwrap() error { return e.wire }

// callError turns an error text the service sent in answer to a call into
// the error the call returns.
func callError(text string) error {
	pe := protocol.ParseError(text)
	if errors.Is(pe, protocol.ErrResponder) {
		return &ResponderError{Message: strings.TrimPrefix(text, protocol.ErrResponder.Prefix), wire: pe}
	}
	return pe
}

// SlowConsumerError is what the error handler receives when the client's
// handlers fall behind and events are dropped: the client's pending limit
// (WithPendingLimits) was reached. It is reported at most once a second,
// with the drops since the previous report. It matches ErrSlowConsumer.
type SlowConsumerError struct {
	// ID is the client's machine id.
	ID string
	// Dropped is how many events were dropped since the previous report;
	// Total how many since Dial (Client.Dropped).
	Dropped, Total uint64
	// MaxEvents and MaxBytes are the pending limits.
	MaxEvents, MaxBytes int
}

func (e *SlowConsumerError) Error() string {
	return fmt.Sprintf("statebus: %s is a slow consumer: dropped %d events (%d since Dial) because its handlers fell behind "+
		"and %d events or %d bytes were waiting for them; make the handlers faster, or raise WithPendingLimits",
		e.ID, e.Dropped, e.Total, e.MaxEvents, e.MaxBytes)
}

// Is reports whether target is ErrSlowConsumer.
func (e *SlowConsumerError) Is(target error) bool { return target == ErrSlowConsumer }

// hangupError is the error for the last text the service sent before it
// closed the connection: the service's own error when it says why it hung
// up (too many connections, access denied), so that errors.Is finds it,
// else just the text.
func hangupError(text string) error {
	pe := protocol.ParseError(text)
	for _, k := range []error{protocol.ErrTooManyConnections, protocol.ErrAccessDenied, protocol.ErrHandshake, protocol.ErrShuttingDown} {
		if errors.Is(pe, k) {
			return pe
		}
	}
	return errors.New(text)
}
