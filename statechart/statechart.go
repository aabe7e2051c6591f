// Package statechart runs XStateNet's JSON state machine scripts in Go.
//
// It owns the statechart model and its semantics: reading a script (XState v4
// JSON and the relaxed form XStateNet's parser accepts: unquoted keys,
// single-quoted strings, comments, trailing commas), checking it against the
// actions, guards, services and delays a program registers by name, and
// running it with the SCXML algorithm: run-to-completion macrosteps made of
// microsteps, document order, exit and entry sets computed from the least
// common compound ancestor, internal events before external ones, done events
// for compound and parallel states, shallow and deep history, eventless
// (always) transitions and delayed (after) transitions on a replaceable clock.
//
// The package does not know about the bus. A machine's outgoing sends (an
// action calling Scope.Send, or an inline {type: 'send'} action) are handed,
// once the macrostep that made them has completed, to the Dispatcher the
// program installs with WithDispatcher; package orchestrator installs one that
// delivers them through statebus.
//
// Deviations from SCXML, and the XStateNet compatibility mode, are listed in
// docs/statecharts.md.
package statechart

import (
	"context"
	"encoding/json"
	"time"
)

// Event is an event a machine processes.
type Event struct {
	// Name is the event's name, as in a script's "on" keys.
	Name string
	// Data is the event's payload as JSON, or nil.
	Data json.RawMessage
	// Origin is the id of the machine that sent it, when known.
	Origin string

	tok     uint64 // a timer's or service's token: stale once its state exits
	oneShot bool
}

// Action is a named action a script refers to in entry, exit or a
// transition's actions. It runs inside a microstep, with the machine's lock
// held: it must not call the machine's Send; it may use the Scope to read and
// change the context, raise internal events and queue sends. An error it
// returns is reported by Send and raises error.execution on the internal queue,
// as SCXML does.
type Action func(s *Scope) error

// Guard is a named condition a transition's cond or guard refers to. It must
// not change the context.
type Guard func(s *Scope) bool

// Service is a named service an invoke refers to. It runs in its own
// goroutine while its state is active; ctx is cancelled when the state exits
// or the machine stops. Its result becomes the data of the done.invoke.<id>
// event, its error the data of error.platform.<id>.
type Service func(ctx context.Context, s *Scope) (any, error)

// Delay is a named delay an after key or a delayed send refers to.
type Delay func(s *Scope) time.Duration

// Implementations are the named actions, guards, services and delays a script
// may refer to. A name a script uses that is not here is a load error.
type Implementations struct {
	Actions  map[string]Action
	Guards   map[string]Guard
	Services map[string]Service
	Delays   map[string]Delay
}

// Outgoing is an event a machine sends to another machine (or itself).
type Outgoing struct {
	// To is the target machine id; for SendSelf it is the sender's own id.
	To string
	// Event is the event, with Origin set to the sending machine's id.
	Event Event
	// Delay is how long after the macrostep the event is to be delivered; 0
	// means at once. A machine's Dispatcher receives delayed sends only when
	// they are due: the runtime keeps the timer, and cancels it when the
	// machine stops.
	Delay time.Duration
}

// Dispatcher delivers a machine's outgoing events. Dispatch is called after
// the macrostep that produced them has completed, in the order the actions
// queued them, without the machine's lock held.
type Dispatcher interface {
	Dispatch(from string, out Outgoing)
}

// DispatcherFunc adapts a function to a Dispatcher.
type DispatcherFunc func(from string, out Outgoing)

// Dispatch calls f(from, out).
func (f DispatcherFunc) Dispatch(from string, out Outgoing) { f(from, out) }

// Result is what one Send did.
type Result struct {
	// Changed reports whether any transition was taken (including targetless
	// ones whose actions ran).
	Changed bool
	// Done reports whether the machine reached a top-level final state and
	// stopped.
	Done bool
}

// Step is what a subscriber sees after each macrostep that took a transition.
type Step struct {
	// Event is the external event that started the macrostep.
	Event Event
	// From and To are the configuration before and after, in the
	// "#id.a.b;#id.c" form.
	From, To string
}
