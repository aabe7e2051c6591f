package protocol

import (
	"errors"
	"strconv"
	"strings"
)

// Error is an error the service reports in a response's "Error" field. Text
// is exactly the text on the wire; Unwrap gives the kind, one of the Err
// values below, so callers can test it with errors.Is.
type Error struct {
	Text string
	kind *Kind
}

func (e *Error) Error() string { return e.Text }

// Unwrap returns the error's kind.
func (e *Error) Unwrap() error {
	if e.kind == nil {
		return nil
	}
	return e.kind
}

// Kind is a class of wire error. Its Prefix is how every text of the kind
// begins, which is how a client recognizes the kind of a text it reads.
type Kind struct {
	Prefix string
	name   string
}

func (k *Kind) Error() string { return "statebus: " + k.name }

// with makes an error of this kind with the given wire text.
func (k *Kind) with(text string) *Error { return &Error{Text: text, kind: k} }

// New returns an error of kind k whose text is the kind's prefix followed by
// detail (the prefix alone when detail is empty).
func (k *Kind) New(detail string) *Error {
	if detail == "" {
		return k.with(k.Prefix)
	}
	return k.with(k.Prefix + detail)
}

// The kinds of error the service sends. The texts of the first five are the
// original service's, byte for byte.
var (
	// ErrInvalidJSON: the line is not valid JSON.
	ErrInvalidJSON = &Kind{"Invalid JSON format", "invalid JSON"}
	// ErrPayloadNull: a request that needs a payload has none.
	ErrPayloadNull = &Kind{"Payload is null", "payload is null"}
	// ErrUnknownType: the Type is not one the service knows.
	ErrUnknownType = &Kind{"Unknown message type: ", "unknown message type"}
	// ErrTargetNotConnected: no connection is subscribed for the target id.
	ErrTargetNotConnected = &Kind{"Target machine not connected: ", "target machine not connected"}
	// ErrDeliveryFailed: the event was accepted but could not be written to
	// the target, for example because it disconnected first.
	ErrDeliveryFailed = &Kind{"Failed to deliver event: ", "failed to deliver event"}

	// ErrIDInUse: another live connection holds the machine id.
	ErrIDInUse = &Kind{"Machine id already in use: ", "machine id already in use"}
	// ErrNotOwner: the sending connection does not hold the id it uses.
	ErrNotOwner = &Kind{"Machine id not registered on this connection: ", "machine id not registered on this connection"}
	// ErrInvalidID: a machine id is empty, too long or malformed.
	ErrInvalidID = &Kind{"Invalid machine id: ", "invalid machine id"}
	// ErrMissingField: a required field is missing or has the wrong type.
	ErrMissingField = &Kind{"", "missing or invalid field"}
	// ErrInvalidUTF8: the line is not valid UTF-8.
	ErrInvalidUTF8 = &Kind{"Invalid UTF-8 in message", "invalid UTF-8"}
	// ErrTooDeep: the JSON is nested deeper than MaxDepth.
	ErrTooDeep = &Kind{"JSON nested deeper than " + strconv.Itoa(MaxDepth) + " levels", "JSON nested too deep"}
	// ErrNotObject: the line is valid JSON but not an object.
	ErrNotObject = &Kind{"Message must be a JSON object", "message is not an object"}
	// ErrSlowConsumer: the target's queue stayed full for the whole
	// SlowConsumerTimeout.
	ErrSlowConsumer = &Kind{"Target machine is not keeping up: ", "target machine is not keeping up"}
	// ErrTooLarge: the line is longer than the service's MaxMessageBytes.
	ErrTooLarge = &Kind{"Message exceeds ", "message too large"}
	// ErrTooManyConnections: the service is at MaxConnections.
	ErrTooManyConnections = &Kind{"Too many connections (limit ", "too many connections"}
	// ErrNoResponder: a request's target is gone, or went away before it
	// replied.
	ErrNoResponder = &Kind{"No responder: ", "no responder"}
	// ErrNoRequest: a Reply names no request that is waiting.
	ErrNoRequest = &Kind{"No request is waiting for ReplyTo ", "no such request"}
	// ErrDropped: an operator's routing rule refused the event.
	ErrDropped = &Kind{"Event dropped: ", "event dropped by a routing rule"}
	// ErrNoWatch: an Unwatch names no watch of this connection.
	ErrNoWatch = &Kind{"No such watch: ", "no such watch"}
	// ErrAccessDenied: the access rules do not allow the action.
	ErrAccessDenied = &Kind{"Access denied: ", "access denied"}
	// ErrHandshake: the connection did not register in time.
	ErrHandshake = &Kind{"Handshake timeout: ", "handshake timeout"}
	// ErrShuttingDown: the service is stopping.
	ErrShuttingDown = &Kind{"Service is shutting down", "service is shutting down"}
	// ErrLimit: the connection (or its user) reached one of the service's
	// per-connection limits; the text names the limit and its config key.
	ErrLimit = &Kind{"Limit reached: ", "limit reached"}
	// ErrAmbiguousField: an event object has a routing key twice, or a key
	// that other JSON readers could take for one (another case, an escape),
	// so that different receivers would read different routing.
	ErrAmbiguousField = &Kind{"Ambiguous event field: ", "ambiguous event field"}
	// ErrResponder: a request's responder answered with an error. The text
	// after the prefix is the responder's own; every other kind is the
	// service's.
	ErrResponder = &Kind{"Responder error: ", "the responder returned an error"}
	// ErrFederation: statebusd is a member of a federation (MessageBus
	// Cluster) and cannot reach it to claim or route an id.
	ErrFederation = &Kind{"Federation unavailable: ", "federation unavailable"}
)

// kinds lists the kinds a client can recognize, most specific first.
var kinds = []*Kind{
	ErrResponder, ErrFederation, ErrLimit, ErrAmbiguousField, ErrTargetNotConnected, ErrNoResponder, ErrNoRequest, ErrNoWatch, ErrDropped, ErrSlowConsumer, ErrDeliveryFailed, ErrUnknownType, ErrIDInUse,
	ErrNotOwner, ErrInvalidID, ErrPayloadNull, ErrInvalidUTF8, ErrTooDeep,
	ErrNotObject, ErrTooLarge, ErrTooManyConnections, ErrAccessDenied, ErrHandshake, ErrShuttingDown,
	ErrInvalidJSON,
}

// ParseError turns a wire error text into an *Error with its kind, so that
// errors.Is(err, protocol.ErrTargetNotConnected) works on the client.
func ParseError(text string) *Error {
	for _, k := range kinds {
		if strings.HasPrefix(text, k.Prefix) {
			return k.with(text)
		}
	}
	if strings.HasSuffix(text, " is required") {
		return ErrMissingField.with(text)
	}
	return &Error{Text: text}
}

// Wire returns the error to send for err: err itself when it is an
// *Error, the kind's text when it is a *Kind, else a delivery failure.
func Wire(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var k *Kind
	if errors.As(err, &k) {
		return k.with(k.Prefix)
	}
	return ErrDeliveryFailed.New(err.Error())
}

// Required returns the error for a missing or wrong-typed field.
func Required(field string) *Error {
	return ErrMissingField.with(field + " is required")
}

// TooLarge returns the error for a line longer than limit bytes.
func TooLarge(limit int) *Error {
	return ErrTooLarge.New(strconv.Itoa(limit) + " bytes")
}

// TooManyConnections returns the error sent to a connection beyond limit.
func TooManyConnections(limit int) *Error {
	return ErrTooManyConnections.New(strconv.Itoa(limit) + ")")
}
