package orchestrator_test

import (
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/testdir"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

// TestDurableMachines: with WithDurableMachines a machine's id on the bus
// is durable on the orchestrator's shared connection: events sent while
// no orchestrator hosts it are stored, and the machine registered again
// by another orchestrator processes them in order, each acknowledged once
// processed.
func TestDurableMachines(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.Durable.Store = durable.DefaultConfig(testdir.New(t)) })
	ctx := ctxT(t)
	src, err := statebus.Dial(ctx, "src", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bus := orchestrator.WithBus(statebus.WithPipeName(srv.Addr()))
	acked := func(n uint64) func() bool {
		return func() bool {
			mb := srv.Durable().Lookup([]byte("counter"))
			return mb != nil && srv.Durable().Info(mb).Acknowledged == n
		}
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			ack, err := src.SendEventAck(ctx, "counter", "NUM", map[string]int{"N": i})
			if err != nil || !ack.Stored || ack.Sequence != uint64(i+1) {
				t.Fatalf("NUM %d: %+v %v", i, ack, err)
			}
		}
	}

	o1 := newOrch(t, bus, orchestrator.WithDurableMachines())
	if err := o1.Register(ctx, "counter", loadCounter(t)); err != nil {
		t.Fatal(err)
	}
	send(0, 10)
	eventually(t, 10*time.Second, acked(10), "the first orchestrator's machine never processed 10 events")
	o1.Close()

	// Nobody hosts counter: stored.
	send(10, 20)
	o2 := newOrch(t, bus, orchestrator.WithDurableMachines())
	if err := o2.Register(ctx, "counter", loadCounter(t), statechart.WithContext(map[string]any{"next": 10})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, acked(20), "the second orchestrator's machine never processed the stored events")
	m := o2.Machine("counter")
	if st, next := m.State(), m.Context()["next"]; st != "#counter.counting" || num(next) != 20 {
		t.Fatalf("after the stored events: state %s, next %v (want counting, 20: each once, in order)", st, next)
	}
}
