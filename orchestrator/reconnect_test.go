package orchestrator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/orchestrator"
)

// TestStateAfterReconnect: when the service restarts, a machine's client
// registers again, and the orchestrator records its state in the new
// registry, although the state did not change.
func TestStateAfterReconnect(t *testing.T) {
	path := bustest.SocketPath(t)
	start := func() *server.Server {
		cfg := server.DefaultConfig()
		cfg.SocketPath, cfg.HealthCheckInterval = path, 0
		s, err := server.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		return s
	}
	stop := func(s *server.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}
	first := start()
	o := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(path), statebus.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond)))
	if err := o.Register(ctxT(t), "pong", load(t, "pong.json", pongImpl)); err != nil {
		t.Fatal(err)
	}
	hasState := func() bool {
		st, _ := registryState(t, path, "pong")
		return st == "#pong.waiting"
	}
	eventually(t, 10*time.Second, hasState, "pong's state never reached the first registry")
	stop(first)
	second := start()
	defer stop(second)
	eventually(t, 20*time.Second, hasState, "pong's state never reached the registry of the restarted service")
}

// TestBusEventsWaitForRoom: events from the bus to a full mailbox wait
// for room (the bus's flow control takes over) rather than being lost,
// and keep their order.
func TestBusEventsWaitForRoom(t *testing.T) {
	srv := bustest.Start(t, nil)
	ctx := ctxT(t)
	var e errs
	o1 := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())))
	o2 := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())), orchestrator.WithMailboxSize(2), orchestrator.WithErrorHandler(e.handle))
	b := newBlocker(t)
	if err := o2.Register(ctx, "b", b.def(t)); err != nil {
		t.Fatal(err)
	}
	if err := o1.Register(ctx, "sender", loadToggle(t)); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := o1.Post(ctx, "sender", "b", fmt.Sprint("E", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	<-b.entered // E0 holds the machine; the rest wait in the mailbox and the client
	b.open()
	eventually(t, 10*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.seen) == n
	}, "b did not take all %d events", n)
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, name := range b.seen {
		if name != fmt.Sprint("E", i) {
			t.Fatalf("event %d was %s", i, name)
		}
	}
}
