package statebus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// recorder collects the events a handler sees.
type recorder struct {
	mu  sync.Mutex
	evs []statebus.Event
}

func (r *recorder) handle(e statebus.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

func (r *recorder) names() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.evs {
		s = append(s, e.Name)
	}
	return strings.Join(s, ",")
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

// TestIdentities: one connection holds three ids; every event, broadcast
// copy, group event and request reaches the handlers of the id it is for
// and no other; each sends and sets its state as itself.
func TestIdentities(t *testing.T) {
	srv := bustest.Start(t, nil)
	var main, rb, rc recorder
	clientErrs, bErrs := make(chan error, 10), make(chan error, 10)
	c := dial(t, srv, "host", statebus.WithHandler("*", main.handle), statebus.WithErrorHandler(func(err error) { clientErrs <- err }))
	b, err := c.Register(ctx(t), "b", statebus.IdentityHandler("*", rb.handle),
		statebus.IdentityErrorHandler(func(err error) { bErrs <- err }),
		statebus.IdentityRequestHandler("Q", func(_ context.Context, e statebus.Event) (any, error) { return "b answers " + e.Name, nil }))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Register(ctx(t), "c")
	if err != nil {
		t.Fatal(err)
	}
	d.OnEvent("*", rc.handle)
	if err := b.JoinGroup(ctx(t), "g"); err != nil {
		t.Fatal(err)
	}
	sender := dial(t, srv, "sender")
	got := make(chan statebus.Event, 10)
	sender.OnEvent("FROM", func(e statebus.Event) { got <- e })

	for _, to := range []string{"host", "b", "c"} {
		if err := sender.SendEvent(ctx(t), to, "TO_"+to, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.SendEvent(ctx(t), "@g", "GROUP", nil); err != nil {
		t.Fatal(err)
	}
	if err := sender.SendEvent(ctx(t), "*", "ALL", nil); err != nil {
		t.Fatal(err)
	}
	reply, err := sender.Request(ctx(t), "b", "Q", nil)
	if err != nil || string(reply.Payload) != `"b answers Q"` {
		t.Fatalf("request to b: %s, %v", reply.Payload, err)
	}
	if _, err := sender.Request(ctx(t), "c", "Q", nil); err == nil || !strings.Contains(err.Error(), "No handler for request Q") {
		t.Fatalf("request to c, which has no handler: %v", err)
	}
	// A mark after everything: once each has it, each has all it gets.
	for _, to := range []string{"host", "b", "c"} {
		sender.SendEvent(ctx(t), to, "MARK", nil)
	}
	bustest.Eventually(t, 10*time.Second, func() bool {
		return strings.HasSuffix(main.names(), "MARK") && strings.HasSuffix(rb.names(), "MARK") && strings.HasSuffix(rc.names(), "MARK")
	}, "marks: host %q, b %q, c %q", main.names(), rb.names(), rc.names())
	for _, tc := range []struct {
		r    *recorder
		want string
	}{{&main, "TO_host,ALL,MARK"}, {&rb, "TO_b,GROUP,ALL,MARK"}, {&rc, "TO_c,ALL,MARK"}} {
		if got := tc.r.names(); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}

	// Each sends as itself and has a state of its own.
	if err := b.SendEvent(ctx(t), "sender", "FROM", nil); err != nil {
		t.Fatal(err)
	}
	if e := <-got; e.Source != "b" {
		t.Fatalf("source %q, want b", e.Source)
	}
	if err := d.PostEvent(ctx(t), "sender", "FROM", nil); err != nil {
		t.Fatal(err)
	}
	if e := <-got; e.Source != "c" {
		t.Fatalf("source %q, want c", e.Source)
	}
	// A refused post goes to the error handler of the id that sent it:
	// b's own, or the client's, naming c.
	b.PostEvent(ctx(t), "nobody", "E", nil)
	if err := <-bErrs; !errors.Is(err, statebus.ErrTargetNotConnected) {
		t.Fatalf("b's error handler got %v", err)
	}
	d.PostEvent(ctx(t), "nobody", "E", nil)
	if err := <-clientErrs; !errors.Is(err, statebus.ErrTargetNotConnected) || !strings.HasPrefix(err.Error(), `statebus: as "c": `) {
		t.Fatalf("the client's error handler got %v", err)
	}
	select {
	case err := <-clientErrs:
		t.Fatalf("the client's error handler also got %v", err)
	default:
	}
	c.SetState(ctx(t), "#host.idle")
	b.SetState(ctx(t), "#b.busy")
	if err := d.SetState(ctx(t), "#c.done"); err != nil {
		t.Fatal(err)
	}
	if s := states(t, sender); s != "b=#b.busy c=#c.done host=#host.idle sender=" {
		t.Fatalf("registry: %s", s)
	}
	if h := srv.Health(); h.ConnectionCount != 2 || h.RegisteredMachines != 4 {
		t.Fatalf("health: %+v", h)
	}
}

// states lists the registry as "id=state ...", sorted by id.
func states(t *testing.T, c *statebus.Client) string {
	t.Helper()
	ms, err := c.Machines(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, m := range ms {
		s = append(s, m.MachineID+"="+m.State)
	}
	return strings.Join(s, " ")
}

// TestIdentityRefusals: an id this client holds, one another connection
// holds, and one past MaxIdsPerConnection are refused with errors that
// say what to do, and leave nothing behind.
func TestIdentityRefusals(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxIDsPerConnection = 3 })
	c := dial(t, srv, "host")
	other := dial(t, srv, "taken")
	if _, err := c.Register(ctx(t), "b"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, want string }{
		{"b", `statebus: "b" is already registered on this client`},
		{"host", `statebus: "host" is already registered on this client`},
		{"taken", `statebus: cannot register "taken": Machine id already in use: taken (another connection holds it; it is free once that one unregisters it or disconnects)`},
		{"*", `statebus: Invalid machine id: "*" is reserved for broadcast`},
	} {
		if x, err := c.Register(ctx(t), tc.id); x != nil || err == nil || err.Error() != tc.want {
			t.Errorf("Register(%q): %v, %v\nwant %s", tc.id, x, err, tc.want)
		}
	}
	if _, err := c.Register(ctx(t), "d"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Register(ctx(t), "e")
	if !errors.Is(err, statebus.ErrLimit) || !strings.Contains(err.Error(), "Dial (or Connect) another Client for more ids") {
		t.Fatalf("past the limit: %v", err)
	}
	t.Log(err)
	if s := states(t, other); s != "b= d= host= taken=" {
		t.Fatalf("registry: %s", s)
	}
	// The one that holds "taken" still does, and is reachable.
	if err := c.SendEvent(ctx(t), "taken", "E", nil); err != nil {
		t.Fatal(err)
	}
}

// TestIdentityUnregisterInFlight: a sender floods an identity; it is
// unregistered in the middle. None of its events reaches the client's
// handlers or another identity's, none reaches its own once Unregister
// returned, and the sender is told it is gone.
func TestIdentityUnregisterInFlight(t *testing.T) {
	srv := bustest.Start(t, nil)
	var main, other recorder
	c := dial(t, srv, "host", statebus.WithHandler("*", main.handle))
	var n atomic.Int64
	b, err := c.Register(ctx(t), "b", statebus.IdentityHandler("*", func(statebus.Event) { n.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx(t), "c", statebus.IdentityHandler("*", other.handle)); err != nil {
		t.Fatal(err)
	}
	gone := make(chan error, 1)
	var told atomic.Bool
	sender := dial(t, srv, "sender", statebus.WithErrorHandler(func(err error) {
		told.Store(true)
		select {
		case gone <- err:
		default:
		}
	}))
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		// Until the service refuses one (b is gone): a fixed number may
		// all be delivered before Unregister on a fast bus.
		for i := 0; i < 5_000_000 && !told.Load(); i++ {
			if err := sender.PostEvent(context.Background(), "b", "FLOOD", i); err != nil {
				return
			}
		}
	}()
	bustest.Eventually(t, 10*time.Second, func() bool { return n.Load() > 100 }, "b got %d events", n.Load())
	if err := b.Unregister(ctx(t)); err != nil {
		t.Fatal(err)
	}
	after := n.Load()
	<-sendDone
	// The sender's events arrive in order: once the mark is in, every
	// event to b sent before it has been read.
	sender.SendEvent(ctx(t), "host", "MARK", nil)
	bustest.Eventually(t, 10*time.Second, func() bool { return main.len() > 0 }, "no mark")
	if got := main.names(); got != "MARK" {
		t.Fatalf("the client's handlers got %.100s", got)
	}
	if other.len() != 0 || n.Load() != after {
		t.Fatalf("after Unregister: c got %d, b %d more", other.len(), n.Load()-after)
	}
	select {
	case err := <-gone:
		if !errors.Is(err, statebus.ErrTargetNotConnected) {
			t.Fatalf("sender told %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sender was not told b is gone")
	}
	if err := b.SendEvent(ctx(t), "host", "E", nil); err == nil || b.Err() == nil {
		t.Fatalf("send from an unregistered identity: %v", err)
	}
	if err := b.Unregister(ctx(t)); err != nil {
		t.Fatalf("second Unregister: %v", err)
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("Done not closed")
	}
	if s := states(t, sender); s != "c= host= sender=" {
		t.Fatalf("registry: %s", s)
	}
	t.Logf("b handled %d events before Unregister returned", after)
}

// TestIdentityReconnect: after the service restarts, the client registers
// its own id and then every identity again, in order, with their states
// and groups, and their handlers work as before. Close frees every id
// before it returns.
func TestIdentityReconnect(t *testing.T) {
	path := bustest.SocketPath(t)
	start := func() *server.Server {
		return bustest.Start(t, func(c *server.Config) { c.SocketPath = path })
	}
	srv := start()
	c := dial(t, srv, "host", statebus.WithReconnectBackoff(time.Millisecond, 20*time.Millisecond))
	got := make(chan string, 10)
	var ids []*statebus.Identity
	for i := range 3 {
		id := fmt.Sprint("m", i)
		x, err := c.Register(ctx(t), id, statebus.IdentityHandler("G", func(statebus.Event) { got <- id }))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, x)
		if err := x.SetState(ctx(t), "#"+id+".s"); err != nil {
			t.Fatal(err)
		}
	}
	if err := ids[1].JoinGroup(ctx(t), "g"); err != nil {
		t.Fatal(err)
	}
	c.SetState(ctx(t), "#host.s")
	srv.Shutdown(context.Background())
	srv = start()
	probe := dial(t, srv, "probe")
	want := "host=#host.s m0=#m0.s m1=#m1.s m2=#m2.s probe="
	bustest.Eventually(t, 10*time.Second, func() bool { return states(t, probe) == want }, "registry %s, want %s", states(t, probe), want)
	ms, _ := probe.Machines(ctx(t))
	for i := 1; i < 4; i++ { // host, m0, m1, m2 in the order registered
		if ms[i].RegisteredAt.Before(ms[i-1].RegisteredAt) {
			t.Fatalf("%s registered before %s", ms[i].MachineID, ms[i-1].MachineID)
		}
	}
	if err := probe.SendEvent(ctx(t), "@g", "G", nil); err != nil {
		t.Fatal(err)
	}
	if id := <-got; id != "m1" {
		t.Fatalf("group event went to %s", id)
	}
	c.Close()
	for _, id := range []string{"host", "m0", "m1", "m2"} {
		if _, err := probe.Register(ctx(t), id); err != nil {
			t.Fatalf("%s after Close: %v", id, err)
		}
	}
	for _, x := range ids {
		select {
		case <-x.Done():
		default:
			t.Fatalf("%s: Done not closed after the client's Close", x.ID())
		}
	}
}

// TestConnectWithoutID: a client without an id of its own holds only identities;
// with none it is not hung up on as a stray connection; it reconnects and
// registers its identities again; it cannot send itself.
func TestConnectWithoutID(t *testing.T) {
	path := bustest.SocketPath(t)
	start := func() *server.Server {
		return bustest.Start(t, func(c *server.Config) { c.SocketPath = path; c.HandshakeTimeout = 100 * time.Millisecond })
	}
	srv := start()
	changes := make(chan statebus.StatusChange, 10)
	c, err := statebus.Connect(ctx(t), statebus.WithPipeName(srv.Addr()),
		statebus.WithReconnectBackoff(time.Millisecond, 20*time.Millisecond),
		statebus.WithStatusHandler(func(sc statebus.StatusChange) { changes <- sc }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-changes // connecting -> connected
	select {
	case sc := <-changes:
		t.Fatalf("a client with no id yet: %+v", sc)
	case <-time.After(500 * time.Millisecond): // 5 times the handshake timeout
	}
	if err := c.SendEvent(ctx(t), "x", "E", nil); err == nil || !strings.Contains(err.Error(), "no machine id of its own") {
		t.Fatalf("send from the id-less client: %v", err)
	}
	got := make(chan string, 2)
	for _, id := range []string{"p", "q"} {
		if _, err := c.Register(ctx(t), id, statebus.IdentityHandler("E", func(e statebus.Event) { got <- id + "<-" + e.Source })); err != nil {
			t.Fatal(err)
		}
	}
	srv.Shutdown(context.Background())
	srv = start()
	probe := dial(t, srv, "probe")
	bustest.Eventually(t, 10*time.Second, func() bool { return states(t, probe) == "p= probe= q=" }, "registry %s", states(t, probe))
	for _, id := range []string{"p", "q"} {
		if err := probe.SendEvent(ctx(t), id, "E", nil); err != nil {
			t.Fatal(err)
		}
		if g := <-got; g != id+"<-probe" {
			t.Fatalf("got %s", g)
		}
	}
	c.Close()
	bustest.Eventually(t, 10*time.Second, func() bool { return states(t, probe) == "probe=" }, "after Close: %s", states(t, probe))
}
