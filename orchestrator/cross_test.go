package orchestrator_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

// TestCrossProcessInOrder: two machines in two processes exchange 10,000
// events each way through the service, in order: the parent's machine
// posts NUM 0..9999 as fast as it can, the child's checks each is the next
// and echoes it, and the parent's checks the echoes the same way. One out
// of order would break either machine for good.
func TestCrossProcessInOrder(t *testing.T) {
	const n = 10000
	srv := bustest.Start(t, nil)
	startChild(t, "counter", "far", srv.Addr())
	var e errs
	o := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())), orchestrator.WithErrorHandler(e.handle))
	ctx := ctxT(t)
	if err := o.Register(ctx, "near", loadCounter(t)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := o.Post(ctx, "near", "far", "NUM", map[string]int{"N": i}); err != nil {
			t.Fatal(err)
		}
	}
	near := o.Machine("near")
	eventually(t, 60*time.Second, func() bool { return num(near.Context()["next"]) == n || near.State() != "#counter.counting" },
		"near counted %v echoes, is %s; errors: %s", near.Context()["next"], near.State(), e.texts())
	if near.State() != "#counter.counting" || num(near.Context()["next"]) != n {
		t.Fatalf("near: %s after %v echoes", near.State(), near.Context()["next"])
	}
	// The far machine's state, from the registry.
	eventually(t, 10*time.Second, func() bool {
		st, _ := registryState(t, srv.Addr(), "far")
		return st == "#counter.counting"
	}, "far's state never reached the registry")
	if s := e.texts(); s != "" {
		t.Fatalf("errors: %s", s)
	}
}

// TestCrossProcessSend: Send to a machine of another process returns its
// new state; once that process is killed, Send and Post report the target
// not connected, and its machine leaves the registry.
func TestCrossProcessSend(t *testing.T) {
	srv := bustest.Start(t, nil)
	pong := startChild(t, "pong", "pong", srv.Addr())
	var e errs
	o := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())), orchestrator.WithErrorHandler(e.handle))
	ctx := ctxT(t)
	if err := o.Register(ctx, "ping", load(t, "ping.json", pingImpl), statechart.WithContext(map[string]any{"count": 0, "maxCount": 100})); err != nil {
		t.Fatal(err)
	}
	// Send through the bus, and the game: ping's PINGs and pong's PONGs.
	res, err := o.Send(ctx, "ping", "pong", "PING", map[string]int{"n": 0})
	if err != nil || !res.Success || res.NewState != "#pong.ponging" || res.ProcessedBy != "pong" || !uuid.MatchString(res.EventID) {
		t.Fatalf("remote Send: %+v, %v", res, err)
	}
	if res, err = o.Send(ctx, "main", "ping", "START", nil); err != nil {
		t.Fatalf("local Send: %+v, %v", res, err)
	}
	ping := o.Machine("ping")
	eventually(t, 30*time.Second, func() bool { return ping.State() == "#ping.done" }, "ping is %s", ping.State())
	eventually(t, 10*time.Second, func() bool {
		st, _ := registryState(t, srv.Addr(), "ping")
		return st == "#ping.done"
	}, "ping's final state never reached the registry")
	if st, _ := registryState(t, srv.Addr(), "pong"); st != "#pong.ponging" {
		t.Fatalf("pong's state in the registry: %q", st)
	}
	// A remote machine's refusal keeps its kind: STOP ends pong.
	if _, err := o.Send(ctx, "ping", "pong", "STOP", nil); err != nil {
		t.Fatal(err)
	}
	res, err = o.Send(ctx, "ping", "pong", "PING", nil)
	if !errors.Is(err, orchestrator.ErrMachineStopped) || res.Error != err.Error() || res.ProcessedBy != "pong" {
		t.Fatalf("Send to a stopped remote machine: %+v, %v", res, err)
	}
	// From a machine this orchestrator does not host, the bus has no sender.
	if _, err := o.Send(ctx, "main", "pong", "PING", nil); err == nil || !strings.Contains(err.Error(), "main is not hosted here") {
		t.Fatalf("Send from an unknown machine: %v", err)
	}

	kill(t, pong)
	eventually(t, 10*time.Second, func() bool {
		_, there := registryState(t, srv.Addr(), "pong")
		return !there
	}, "the killed process's machine is still registered")
	res, err = o.Send(ctx, "ping", "pong", "PING", nil)
	if !errors.Is(err, statebus.ErrNoResponder) || err.Error() != "No responder: pong is not connected" || res.Success || res.Error != err.Error() {
		t.Fatalf("Send to a killed process's machine: %+v, %v", res, err)
	}
	if err := o.Post(ctx, "ping", "pong", "PING", nil); err != nil {
		t.Fatal(err) // queued: the bus answers the error handler
	}
	eventually(t, 10*time.Second, func() bool {
		return strings.Contains(e.texts(), "orchestrator: ping on the bus: Target machine not connected: pong")
	}, "the error handler got %q", e.texts())
}

var _ = fmt.Sprint
