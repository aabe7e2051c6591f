package orchestrator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

func jsonInto(data json.RawMessage, v any) error { return json.Unmarshal(data, v) }

var uuid = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// errs collects what reaches an orchestrator's error handler.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) handle(err error) {
	e.mu.Lock()
	e.list = append(e.list, err)
	e.mu.Unlock()
}

func (e *errs) texts() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s []string
	for _, err := range e.list {
		s = append(s, err.Error())
	}
	return strings.Join(s, "\n")
}

// TestLocalPingPong: the seed's pair in one process, without a bus: START
// makes ping send PING, pong answers, until ping has 5 PONGs.
func TestLocalPingPong(t *testing.T) {
	ctx := ctxT(t)
	o := newOrch(t)
	if err := o.Register(ctx, "pong", load(t, "pong.json", pongImpl)); err != nil {
		t.Fatal(err)
	}
	if err := o.Register(ctx, "ping", load(t, "ping.json", pingImpl)); err != nil {
		t.Fatal(err)
	}
	res, err := o.Send(ctx, "main", "ping", "START", nil)
	if err != nil || !res.Success || res.ProcessedBy != "ping" || !uuid.MatchString(res.EventID) ||
		time.Since(res.Timestamp) > time.Minute || res.Error != "" {
		t.Fatalf("Send START: %+v, %v", res, err)
	}
	// The START's transition has completed; its PING may have been
	// answered already.
	if res.NewState != "#ping.pinging" && res.NewState != "#ping.done" {
		t.Fatalf("NewState %q", res.NewState)
	}
	eventually(t, 5*time.Second, func() bool { return o.Machine("ping").State() == "#ping.done" }, "ping is %s", o.Machine("ping").State())
	if n := o.Machine("pong").Context()["count"]; num(n) != 5 {
		t.Fatalf("pong counted %v PINGs", n)
	}
	if got := o.Machines(); fmt.Sprint(got) != "[ping pong]" {
		t.Fatalf("Machines %v", got)
	}
}

// TestSendErrors: each way a Send fails, with the result's Error the
// error's text and errors.Is finding its kind.
func TestSendErrors(t *testing.T) {
	ctx := ctxT(t)
	var e errs
	o := newOrch(t, orchestrator.WithErrorHandler(e.handle))
	failing := statechart.Implementations{Actions: map[string]statechart.Action{
		"incrementCount": func(*statechart.Scope) error { return errors.New("disk full") },
		"sendPong":       func(*statechart.Scope) error { return nil },
	}}
	if err := o.Register(ctx, "pong", load(t, "pong.json", pongImpl)); err != nil {
		t.Fatal(err)
	}
	if err := o.Register(ctx, "bad", load(t, "pong.json", failing)); err != nil {
		t.Fatal(err)
	}
	check := func(res orchestrator.EventResult, err error, kind error, text string) {
		t.Helper()
		if err == nil || !errors.Is(err, kind) || err.Error() != text || res.Success || res.Error != text || !uuid.MatchString(res.EventID) {
			t.Fatalf("got %+v, %v\nwant %v: %s", res, err, kind, text)
		}
	}
	res, err := o.Send(ctx, "main", "nobody", "PING", nil)
	check(res, err, statebus.ErrNoResponder, "No responder: nobody is not connected")
	if err := o.Post(ctx, "main", "nobody", "PING", nil); !errors.Is(err, statebus.ErrTargetNotConnected) || err.Error() != "Target machine not connected: nobody" {
		t.Fatalf("Post: %v", err)
	}

	res, err = o.Send(ctx, "main", "bad", "PING", nil)
	check(res, err, orchestrator.ErrEventFailed, "orchestrator: event failed: bad: disk full")
	if res.NewState != "#pong.ponging" || res.ProcessedBy != "bad" {
		t.Fatalf("a failed action leaves the machine where it went: %+v", res)
	}

	// pong answers "main", which nobody hosts: the error handler hears it.
	if res, err = o.Send(ctx, "main", "pong", "PING", nil); err != nil || res.NewState != "#pong.ponging" {
		t.Fatalf("%+v, %v", res, err)
	}
	eventually(t, 5*time.Second, func() bool {
		return strings.Contains(e.texts(), "orchestrator: pong's PONG was not delivered: Target machine not connected: main")
	}, "error handler got %q", e.texts())

	if _, err = o.Send(ctx, "main", "pong", "STOP", nil); err != nil {
		t.Fatal(err)
	}
	res, err = o.Send(ctx, "main", "pong", "PING", nil)
	check(res, err, orchestrator.ErrMachineStopped, "orchestrator: machine stopped: pong takes no more events ("+statechart.ErrDone.Error()+")")

	if _, err := o.Send(ctx, "main", "pong", "PING", func() {}); err == nil || !strings.Contains(err.Error(), "cannot encode payload") {
		t.Fatalf("unencodable payload: %v", err)
	}
	if err := o.Register(ctx, "pong", load(t, "pong.json", pongImpl)); err == nil || err.Error() != "orchestrator: pong is already registered here" {
		t.Fatalf("second pong: %v", err)
	}
	if err := o.Register(ctx, "*", load(t, "pong.json", pongImpl)); err == nil || !strings.Contains(err.Error(), `"*" is reserved`) {
		t.Fatalf("id *: %v", err)
	}
}

// blocker is a machine whose action waits on a channel, to fill its
// mailbox; it records the events it took, in order.
type blocker struct {
	release chan struct{}
	once    sync.Once
	entered chan struct{} // a token each time the action starts
	mu      sync.Mutex
	seen    []string
}

// newBlocker returns a blocker released when the test ends, before the
// orchestrators made before it are closed.
func newBlocker(t *testing.T) *blocker {
	b := &blocker{release: make(chan struct{}), entered: make(chan struct{}, 100)}
	t.Cleanup(b.open)
	return b
}

func (b *blocker) open() { b.once.Do(func() { close(b.release) }) }

func (b *blocker) def(t *testing.T) *statechart.Definition {
	d, err := statechart.Load([]byte(`{id: 'b', initial: 'a', states: {a: {on: {'*': {actions: ['hold']}}}}}`),
		statechart.Implementations{Actions: map[string]statechart.Action{"hold": func(s *statechart.Scope) error {
			b.entered <- struct{}{}
			<-b.release
			b.mu.Lock()
			b.seen = append(b.seen, s.Event.Name)
			b.mu.Unlock()
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestMailboxFull: a full mailbox makes Post fail at once and Send wait
// up to its deadline; what was queued is processed in arrival order.
func TestMailboxFull(t *testing.T) {
	ctx := ctxT(t)
	o := newOrch(t, orchestrator.WithMailboxSize(3))
	b := newBlocker(t)
	if err := o.Register(ctx, "b", b.def(t)); err != nil {
		t.Fatal(err)
	}
	// E0 is taken at once and holds the machine; E1..E3 fill the mailbox.
	if err := o.Post(ctx, "main", "b", "E0", nil); err != nil {
		t.Fatal(err)
	}
	<-b.entered
	for _, name := range []string{"E1", "E2", "E3"} {
		if err := o.Post(ctx, "main", "b", name, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := o.Post(ctx, "main", "b", "E4", nil)
	if !errors.Is(err, orchestrator.ErrMailboxFull) || err.Error() != "orchestrator: mailbox full: b already holds 3 events; E4 was not queued (raise WithMailboxSize, or send less)" {
		t.Fatalf("Post to a full mailbox: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	res, err := o.Send(short, "main", "b", "E5", nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || res.Success {
		t.Fatalf("Send to a full mailbox: %+v, %v", res, err)
	}
	// A Send that waits gets in once there is room.
	done := make(chan error, 1)
	go func() {
		_, err := o.Send(ctx, "main", "b", "E6", nil)
		done <- err
	}()
	b.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if got := strings.Join(b.seen, ","); got != "E0,E1,E2,E3,E6" {
		t.Fatalf("processed %s", got)
	}
}

// TestCloseFailsWaitingSend: Close ends a Send waiting on a machine's
// mailbox with ErrClosed, stops the machine and its goroutines (goleak).
func TestCloseFailsWaitingSend(t *testing.T) {
	ctx := ctxT(t)
	o := newOrch(t, orchestrator.WithMailboxSize(1))
	b := newBlocker(t)
	if err := o.Register(ctx, "b", b.def(t)); err != nil {
		t.Fatal(err)
	}
	o.Post(ctx, "main", "b", "HOLD", nil)
	<-b.entered
	if err := o.Post(ctx, "main", "b", "QUEUED", nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := o.Send(ctx, "main", "b", "WAITING", nil)
		done <- err
	}()
	closed := make(chan struct{})
	go func() {
		o.Close()
		close(closed)
	}()
	if err := <-done; !errors.Is(err, orchestrator.ErrClosed) {
		t.Fatalf("waiting Send: %v", err)
	}
	b.open() // the event being processed finishes; Close waits for it
	<-closed
	if _, err := o.Send(ctx, "main", "b", "LATE", nil); !errors.Is(err, orchestrator.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := o.Register(ctx, "c", b.def(t)); !errors.Is(err, orchestrator.ErrClosed) {
		t.Fatalf("Register after Close: %v", err)
	}
}

// TestOwnEventsThroughMailbox: self-sends, delayed sends and after
// timers reach the machine through its mailbox, after the transition
// that made them.
func TestOwnEventsThroughMailbox(t *testing.T) {
	ctx := ctxT(t)
	o := newOrch(t)
	d, err := statechart.Load([]byte(`{
		id: 't', initial: 'a',
		states: {
			a: { on: { GO: 'b' } },
			b: { entry: ['next'], on: { NEXT: 'c' } },
			c: { after: { 20: 'd' } },
			d: { entry: ['later'], on: { LATE: 'e' } },
			e: {},
		},
	}`), statechart.Implementations{Actions: map[string]statechart.Action{
		"next":  func(s *statechart.Scope) error { s.SendSelf("NEXT", nil); return nil },
		"later": func(s *statechart.Scope) error { s.SendAfter(10*time.Millisecond, "", "LATE", nil); return nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Register(ctx, "t", d); err != nil {
		t.Fatal(err)
	}
	res, err := o.Send(ctx, "main", "t", "GO", nil)
	if err != nil || res.NewState != "#t.b" {
		t.Fatalf("the self-send is deferred until GO's transition completed: %+v, %v", res, err)
	}
	eventually(t, 5*time.Second, func() bool { return o.Machine("t").State() == "#t.e" }, "t is %s", o.Machine("t").State())
}

// TestOrderFromManySenders: each sender's events reach a machine in the
// order it sent them, with several senders at once.
func TestOrderFromManySenders(t *testing.T) {
	ctx := ctxT(t)
	o := newOrch(t, orchestrator.WithMailboxSize(64))
	const senders, each = 4, 500
	for i := range senders {
		if err := o.Register(ctx, fmt.Sprint("counter", i), loadCounter(t)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range each {
				if _, err := o.Send(ctx, "main", fmt.Sprint("counter", i), "NUM", map[string]int{"N": n}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range senders {
		m := o.Machine(fmt.Sprint("counter", i))
		if m.State() != "#counter.counting" || num(m.Context()["next"]) != each {
			t.Fatalf("counter%d: %s, next %v", i, m.State(), m.Context()["next"])
		}
	}
}

// TestUnregister: an unregistered machine is gone; its id may be hosted
// again.
func TestUnregister(t *testing.T) {
	ctx := ctxT(t)
	o := newOrch(t)
	if err := o.Register(ctx, "pong", load(t, "pong.json", pongImpl)); err != nil {
		t.Fatal(err)
	}
	if err := o.Unregister("pong"); err != nil {
		t.Fatal(err)
	}
	if err := o.Unregister("pong"); err == nil {
		t.Fatal("second Unregister succeeded")
	}
	if _, err := o.Send(ctx, "main", "pong", "PING", nil); !errors.Is(err, statebus.ErrNoResponder) {
		t.Fatal(err)
	}
	if err := o.Register(ctx, "pong", load(t, "pong.json", pongImpl)); err != nil {
		t.Fatal(err)
	}
}
