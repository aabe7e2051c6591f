package durable_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/testdir"
)

// recorder is a durable client's handler: the payloads it handled, in
// order.
type recorder struct {
	mu   sync.Mutex
	got  []int
	seqs []uint64
}

func (r *recorder) handle(e statebus.Event) {
	n, _ := strconv.Atoi(string(e.Payload))
	r.mu.Lock()
	r.got = append(r.got, n)
	r.seqs = append(r.seqs, e.Sequence)
	r.mu.Unlock()
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func restart(t *testing.T, sock, dir string) *server.Server {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.SocketPath = sock
	cfg.HealthCheckInterval = 0
	cfg.Durable.Store = durable.DefaultConfig(dir)
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

// restartable is a service on one socket and store that a test stops
// and starts again; the last one stops when the test ends.
type restartable struct {
	sock, dir string
	srv       *server.Server
	t         *testing.T
}

func newRestartable(t *testing.T) *restartable {
	r := &restartable{sock: bustest.SocketPath(t), dir: testdir.New(t), t: t}
	r.srv = restart(t, r.sock, r.dir)
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) stop() {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.srv.Shutdown(c)
}

// again stops the service and starts it again on the same store.
func (r *restartable) again() {
	r.stop()
	r.srv = restart(r.t, r.sock, r.dir)
}

// TestClientDurable: the Go client declares its id durable, acknowledges
// after its handler, gets what was sent while it was away, and across a
// restart of the service handles no event twice and misses none.
func TestClientDurable(t *testing.T) {
	ctx := t.Context()
	svc := newRestartable(t)
	sock := svc.sock

	rec := &recorder{}
	ctl, err := statebus.Dial(ctx, "ctl", statebus.WithPipeName(sock), statebus.WithDurable(),
		statebus.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ctl.OnEvent("E", rec.handle)
	src, err := statebus.Dial(ctx, "src", statebus.WithPipeName(sock), statebus.WithWaitForReconnect(),
		statebus.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i := 1; i <= 100; i++ {
		if err := src.SendEvent(ctx, "ctl", "E", i); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return rec.len() == 100 }, "100 handled")
	mb := svc.srv.Durable().Lookup([]byte("ctl"))
	bustest.Eventually(t, 10*time.Second, func() bool { return svc.srv.Durable().Info(mb).Acknowledged == 100 }, "100 acknowledged")

	// The service restarts; the client reconnects. Events 101..200.
	svc.again()
	for i := 101; i <= 200; i++ {
		if err := src.SendEvent(ctx, "ctl", "E", i); err != nil {
			t.Fatal(err)
		}
	}
	// A last event: a duplicate would be handled before it, in order.
	if err := src.SendEvent(ctx, "ctl", "E", 201); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return rec.len() >= 201 }, "201 handled")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 201 {
		t.Fatalf("handled %d events, want 201", len(rec.got))
	}
	for i, n := range rec.got {
		if n != i+1 || rec.seqs[i] != uint64(i+1) {
			t.Fatalf("event %d: payload %d sequence %d", i, n, rec.seqs[i])
		}
	}

	// Replay from the Go API.
	evs, next, err := src.Replay(ctx, "ctl", statebus.ReplayOptions{FromSequence: 150, Limit: 10})
	if err != nil || len(evs) != 10 || evs[0].Sequence != 150 || string(evs[0].Event.Payload) != "150" || next != 160 {
		t.Fatalf("Replay: %d events, next %d, %v", len(evs), next, err)
	}
}

// TestClientDurableLateHandler: events waiting in the mailbox arrive as
// soon as the client connects, before OnEvent; they are held, not lost,
// and handed to the handler once it is added. A refused event comes
// again.
func TestClientDurableLateHandler(t *testing.T) {
	ctx := t.Context()
	srv := startDurable(t, "", func(c *server.Config) { c.Durable.Patterns = []string{"late"} })
	src, err := statebus.Dial(ctx, "src", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i := 1; i <= 20; i++ {
		if err := src.SendEvent(ctx, "late", "E", i); err != nil {
			t.Fatal(err)
		}
	}
	c, err := statebus.Dial(ctx, "late", statebus.WithPipeName(srv.Addr()), statebus.WithDurable())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mb := srv.Durable().Lookup([]byte("late"))
	rec := &recorder{}
	refused := false
	c.OnEvent("E", func(e statebus.Event) {
		if e.Sequence == 7 && !refused {
			refused = true
			c.Refuse(e.Sequence, "try again")
			return
		}
		rec.handle(e)
	})
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Durable().Info(mb).Acknowledged == 20 }, "20 acknowledged")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 20 {
		t.Fatalf("handled %v", rec.got)
	}
	for i, n := range rec.got {
		if n != i+1 {
			t.Fatalf("handled %v", rec.got)
		}
	}
}

// TestClientIdentityDurable: an identity a client holds next to its own
// id (Client.Register, as the orchestrator hosts machines) declares its
// id durable with IdentityDurable: it gets what was stored while it was
// away, in order, with sequences, acknowledges after its handler, and
// across a restart of the service handles nothing twice; the client's
// own handlers see none of it.
func TestClientIdentityDurable(t *testing.T) {
	ctx := t.Context()
	svc := newRestartable(t)
	sock := svc.sock
	backoff := statebus.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond)
	src, err := statebus.Dial(ctx, "src", statebus.WithPipeName(sock), statebus.WithWaitForReconnect(), backoff)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	host, err := statebus.Connect(ctx, statebus.WithPipeName(sock), backoff)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	var own recorder
	host.OnEvent("*", own.handle)
	rec := &recorder{}
	register := func() *statebus.Identity {
		x, err := host.Register(ctx, "box", statebus.IdentityDurable(), statebus.IdentityHandler("E", rec.handle))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x := register()
	send := func(from, to int) {
		for i := from; i <= to; i++ {
			if err := src.SendEvent(ctx, "box", "E", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(1, 10)
	bustest.Eventually(t, 10*time.Second, func() bool { return rec.len() == 10 }, "10 handled")
	mb := svc.srv.Durable().Lookup([]byte("box"))
	bustest.Eventually(t, 10*time.Second, func() bool { return svc.srv.Durable().Info(mb).Acknowledged == 10 }, "10 acknowledged")

	// Away: events are stored for it.
	if err := x.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 11; i <= 20; i++ {
		ack, err := src.SendEventAck(ctx, "box", "E", i)
		if err != nil || !ack.Stored || ack.Sequence != uint64(i) {
			t.Fatalf("event %d: %+v %v", i, ack, err)
		}
	}
	register()
	bustest.Eventually(t, 10*time.Second, func() bool { return rec.len() == 20 }, "20 handled")

	// The service restarts: the identity is registered durable again and
	// what comes again is dropped.
	svc.again()
	send(21, 30)
	bustest.Eventually(t, 10*time.Second, func() bool { return rec.len() >= 30 }, "30 handled")
	mb = svc.srv.Durable().Lookup([]byte("box"))
	bustest.Eventually(t, 10*time.Second, func() bool { return svc.srv.Durable().Info(mb).Acknowledged == 30 }, "30 acknowledged")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, n := range rec.got {
		if n != i+1 || rec.seqs[i] != uint64(i+1) {
			t.Fatalf("event %d: payload %d sequence %d (all %v)", i, n, rec.seqs[i], rec.got)
		}
	}
	if len(rec.got) != 30 || own.len() != 0 {
		t.Fatalf("box handled %d events, the client's own handler %d", len(rec.got), own.len())
	}
}
