package statebus

import (
	"errors"
	"fmt"

	"github.com/statebus/statebus/protocol"
)

// Errors a Client returns. Errors the service reports are *protocol.Error
// values that wrap one of the protocol kinds re-exported here, so
// errors.Is(err, statebus.ErrTargetNotConnected) works.
var (
	// ErrNotConnected: the client is closed, its connection was lost, or it
	// never connected.
	ErrNotConnected = errors.New("statebus: not connected")

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
	// ErrSlowConsumer: the target did not read its events in time.
	ErrSlowConsumer error = protocol.ErrSlowConsumer
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
