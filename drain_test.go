package statebus_test

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// TestDrain: Drain lets the handlers run every event the service
// acknowledged, leaves the groups, gives the id back, and closes; events
// sent once it has unregistered are refused, not lost.
func TestDrain(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "a")
	var statuses []statebus.StatusChange
	statusDone := make(chan struct{})
	b := dial(t, srv, "b", statebus.WithStatusHandler(func(s statebus.StatusChange) {
		statuses = append(statuses, s) // the dispatch goroutine only
		if s.To == statebus.Closed {
			close(statusDone)
		}
	}))
	if err := b.JoinGroup(ctx(t), "workers"); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var handled atomic.Int64
	b.OnEvent("JOB", func(statebus.Event) {
		<-release
		handled.Add(1)
		// Handlers may still send while the drain waits for them.
		if err := b.SendEvent(context.Background(), "a", "DONE", nil); err != nil && handled.Load() == 1 {
			t.Errorf("send from a handler during the drain: %v", err)
		}
	})
	a.OnEvent("DONE", func(statebus.Event) {})
	const n = 100
	for range n {
		if err := a.SendEvent(ctx(t), "b", "JOB", nil); err != nil {
			t.Fatal(err)
		}
	}
	drained := make(chan error, 1)
	go func() { drained <- b.Drain(ctx(t)) }()
	bustest.Eventually(t, 10*time.Second, func() bool { return b.Status() == statebus.Draining }, "status %v, want draining", b.Status())
	if b.Connected() {
		t.Fatal("a draining client says it is connected")
	}
	if err := b.JoinGroup(ctx(t), "late"); !errors.Is(err, statebus.ErrClosed) {
		t.Fatalf("JoinGroup while draining: %v, want ErrClosed", err)
	}
	second := make(chan error, 1) // waits for the first, does not cut it short
	go func() { second <- b.Drain(ctx(t)) }()
	close(release)
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Drain did not return")
	}
	if got := handled.Load(); got != n {
		t.Fatalf("%d of %d acknowledged events handled before Drain returned", got, n)
	}
	if err := <-second; err != nil {
		t.Fatalf("a second Drain: %v", err)
	}
	if b.Status() != statebus.Closed || !errors.Is(b.Err(), statebus.ErrClosed) {
		t.Fatalf("after Drain: %v, %v", b.Status(), b.Err())
	}
	if err := a.SendEvent(ctx(t), "b", "JOB", nil); !errors.Is(err, statebus.ErrTargetNotConnected) {
		t.Fatalf("send to a drained client: %v, want ErrTargetNotConnected", err)
	}
	if err := a.SendEvent(ctx(t), "@workers", "JOB", nil); !errors.Is(err, statebus.ErrTargetNotConnected) {
		t.Fatalf("send to the drained client's group: %v, want ErrTargetNotConnected", err)
	}
	<-statusDone
	var path []statebus.Status
	for _, s := range statuses {
		path = append(path, s.To)
	}
	if want := []statebus.Status{statebus.Connected, statebus.Draining, statebus.Closed}; !reflect.DeepEqual(path, want) {
		t.Fatalf("statuses %v, want %v", path, want)
	}
	if err := b.Drain(ctx(t)); err != nil {
		t.Fatalf("second Drain: %v", err)
	}
}

// TestDrainTimeout: a handler that never returns holds Drain only until
// its context ends; the client is closed then.
func TestDrainTimeout(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "a")
	b := dial(t, srv, "b")
	stuck := make(chan struct{})
	defer close(stuck)
	b.OnEvent("STUCK", func(statebus.Event) { <-stuck })
	a.SendEvent(ctx(t), "b", "STUCK", nil)
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b.Drain(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain: %v, want DeadlineExceeded", err)
	}
	if b.Status() != statebus.Closed {
		t.Fatalf("status %v after a timed-out Drain", b.Status())
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().RegisteredMachines == 1 },
		"%d machines registered, want 1 (b unregistered)", srv.Health().RegisteredMachines)
}

// TestCallLostWithItsConnection: a call waiting for an answer when its
// connection is lost fails at once with ErrNotConnected, even without a
// deadline; calls made while reconnecting fail with ErrNotConnected, not
// ErrClosed.
func TestCallLostWithItsConnection(t *testing.T) {
	fb := newFakeBus(t)
	fb.mu.Lock()
	fb.mute[2] = true // SendEvent is never acknowledged
	fb.mu.Unlock()
	c, err := statebus.Dial(ctx(t), "m", statebus.WithPipeName(fb.path), statebus.WithReconnectBackoff(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := make(chan error, 1)
	go func() { sent <- c.SendEvent(context.Background(), "x", "E", nil) }()
	bustest.Eventually(t, 10*time.Second, func() bool { return len(fb.requests(1)) == 3 }, "the SendEvent did not arrive: %v", fb.requests(1))
	fb.dropAll()
	select {
	case err := <-sent:
		if !errors.Is(err, statebus.ErrNotConnected) || errors.Is(err, statebus.ErrClosed) {
			t.Fatalf("SendEvent: %v, want ErrNotConnected", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call outlived its connection")
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return c.Status() == statebus.Reconnecting }, "status %v", c.Status())
	if err := c.SendEvent(ctx(t), "x", "E", nil); !errors.Is(err, statebus.ErrNotConnected) || errors.Is(err, statebus.ErrClosed) {
		t.Fatalf("SendEvent while reconnecting: %v, want ErrNotConnected", err)
	}
	// Recorded now, set up by the next connection.
	if err := c.JoinGroup(ctx(t), "g"); err != nil {
		t.Fatalf("JoinGroup while reconnecting: %v", err)
	}
}

// TestWatchStopBounded: stopping a watch whose Unwatch the service never
// answers returns after the dial timeout, and its handler is not called
// again.
func TestWatchStopBounded(t *testing.T) {
	fb := newFakeBus(t)
	fb.mu.Lock()
	fb.mute[106] = true
	fb.mu.Unlock()
	c, err := statebus.Dial(ctx(t), "m", statebus.WithPipeName(fb.path), statebus.WithDialTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop, err := c.Watch(ctx(t), statebus.Filter{}, func(statebus.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("stop: %v, want DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a watch's stop blocked")
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

// TestSendOptionOpaque: a SendOption can only come from this package, so
// callers cannot set the line's protocol fields (Id, NoAck, Request).
func TestSendOptionOpaque(t *testing.T) {
	arg := reflect.TypeOf(statebus.SendOption(nil)).In(0).Elem()
	if arg.PkgPath() != "github.com/statebus/statebus" || arg.Name() == "" || arg.Name()[0] < 'a' {
		t.Fatalf("SendOption works on %v, which other packages can name", arg)
	}
}
