package orchestrator_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/orchestrator"
)

// registry returns every machine's state in the service's registry.
func registry(t *testing.T, pipe string) map[string]string {
	t.Helper()
	ms, err := statebus.Machines(ctxT(t), statebus.WithPipeName(pipe))
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(ms))
	for _, x := range ms {
		m[x.MachineID] = x.State
	}
	return m
}

// TestHostManyMachines: one process hosts 200 machines against a service
// with the default limits (at most 32 connections per user): they share 4
// connections; each gets an event from another process's client and
// records its new state; requests reach the machine they are for.
func TestHostManyMachines(t *testing.T) {
	const n = 200
	srv := bustest.Start(t, nil)
	if cfg := server.DefaultConfig(); cfg.MaxConnectionsPerUID != 32 || cfg.MaxIDsPerConnection != 64 {
		t.Fatalf("the service's defaults changed: %+v", cfg)
	}
	var e errs
	o := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())), orchestrator.WithErrorHandler(e.handle))
	ctx := ctxT(t)
	toggle := loadToggle(t)
	for i := range n {
		if err := o.Register(ctx, fmt.Sprintf("m%03d", i), toggle); err != nil {
			t.Fatal(err)
		}
	}
	if c, h := o.Connections(), srv.Health(); c != 4 || h.ConnectionCount != 4 || h.RegisteredMachines != n {
		t.Fatalf("%d connections, service %+v; want 4 connections for %d machines", c, h, n)
	}
	sender := dialT(t, srv.Addr(), "sender")
	for i := range n {
		if err := sender.SendEvent(ctx, fmt.Sprintf("m%03d", i), "T", nil); err != nil {
			t.Fatal(err)
		}
	}
	var wrong []string
	eventually(t, 30*time.Second, func() bool {
		wrong = wrong[:0]
		for id, st := range registry(t, srv.Addr()) {
			if id != "sender" && st != "#t.b" {
				wrong = append(wrong, id+"="+st)
			}
		}
		return len(wrong) == 0
	}, "states not reported: %v", lazy(func() string { return fmt.Sprint(len(wrong), wrong[:min(len(wrong), 5)]) }))
	for i := range n {
		if st := o.Machine(fmt.Sprintf("m%03d", i)).State(); st != "#t.b" {
			t.Fatalf("m%03d is %s: it got another machine's event, or none", i, st)
		}
	}
	// A request reaches the machine it is for, on whichever connection.
	for _, id := range []string{"m000", "m063", "m064", "m199"} {
		reply, err := sender.Request(ctx, id, "T", nil)
		var res orchestrator.EventResult
		if err != nil || json.Unmarshal(reply.Payload, &res) != nil || res.ProcessedBy != id || res.NewState != "#t.a" {
			t.Fatalf("request to %s: %s, %v", id, reply.Payload, err)
		}
	}
	// Machines leave and come back; a connection whose last machine left
	// is closed.
	for i := 128; i < n; i++ {
		if err := o.Unregister(fmt.Sprintf("m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if c, h := o.Connections(), srv.Health(); c != 2 || h.RegisteredMachines != 129 {
		t.Fatalf("after unregistering 72: %d connections, service %+v", c, h)
	}
	eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 3 }, "the emptied connection is still open")
	if err := sender.SendEvent(ctx, "m150", "T", nil); err == nil || !strings.Contains(err.Error(), "Target machine not connected: m150") {
		t.Fatalf("send to an unregistered machine: %v", err)
	}
	if err := o.Register(ctx, "m150", toggle); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	// Close does not wait for the service: it forgets the ids when it
	// reads the ends of the connections.
	eventually(t, 10*time.Second, func() bool { return srv.Health().RegisteredMachines == 1 }, "machines still registered after Close: %+v", srv.Health())
	eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 1 }, "connections still open after Close")
	if e.texts() != "" {
		t.Fatalf("errors: %s", e.texts())
	}
}

// TestServiceAllowsFewerIDs: a service whose MaxIdsPerConnection is below
// the orchestrator's WithMachinesPerConnection refuses one id too many on
// a connection; the machine goes on another, and nothing fails.
func TestServiceAllowsFewerIDs(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxIDsPerConnection = 10 })
	o := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())))
	toggle := loadToggle(t)
	for i := range 25 {
		if err := o.Register(ctxT(t), fmt.Sprint("m", i), toggle); err != nil {
			t.Fatal(err)
		}
	}
	if c, h := o.Connections(), srv.Health(); c != 3 || h.ConnectionCount != 3 || h.RegisteredMachines != 25 {
		t.Fatalf("%d connections, service %+v; want 3", c, h)
	}
	// One machine per connection, as before machines shared them.
	o2 := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())), orchestrator.WithMachinesPerConnection(1))
	for i := range 3 {
		if err := o2.Register(ctxT(t), fmt.Sprint("own", i), toggle); err != nil {
			t.Fatal(err)
		}
	}
	if c := o2.Connections(); c != 3 {
		t.Fatalf("%d connections for 3 machines, one each", c)
	}
}

// lazy is a message made when it is printed.
type lazy func() string

func (l lazy) String() string { return l() }

// dialT connects a plain client under id.
func dialT(t *testing.T, pipe, id string) *statebus.Client {
	t.Helper()
	c, err := statebus.Dial(ctxT(t), id, statebus.WithPipeName(pipe))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
