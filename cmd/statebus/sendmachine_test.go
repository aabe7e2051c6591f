package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

// hostPong hosts the example's pong machine on the test's bus.
func hostPong(t *testing.T, opt statebus.Option) *orchestrator.Orchestrator {
	t.Helper()
	script, err := os.ReadFile("../../examples/pingpong/pong.json")
	if err != nil {
		t.Fatal(err)
	}
	def, err := statechart.Load(script, statechart.Implementations{Actions: map[string]statechart.Action{
		"incrementCount": func(*statechart.Scope) error { return nil },
		"sendPong":       func(*statechart.Scope) error { return nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
	o := orchestrator.New(orchestrator.WithBus(opt))
	t.Cleanup(func() { o.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Register(ctx, "pong", def); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestOrchestratedMachine: machines lists an orchestrated machine's state
// in a STATE column, and send to it prints its new state.
func TestOrchestratedMachine(t *testing.T) {
	flag, opt := startBus(t)
	dial(t, "plain", opt)
	hostPong(t, opt)
	var r result
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r = runCmd(t, "", args(flag, "machines")...)
		if strings.Contains(r.stdout, "#pong.waiting") || time.Now().After(deadline) {
			break
		}
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasSuffix(lines[0], "CONNECTED FOR  STATE") {
		t.Fatalf("exit %d:\n%s", r.code, r.stdout)
	}
	if f := strings.Fields(lines[1]); f[0] != "plain" || f[len(f)-1] != "-" {
		t.Errorf("plain client's row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "pong" || f[len(f)-1] != "#pong.waiting" ||
		strings.Index(lines[2], "#pong.waiting") != strings.Index(lines[0], "STATE") {
		t.Errorf("pong's row %q", lines[2])
	}

	r = runCmd(t, "", args(flag, "send", "pong", "PING", `{"n":1}`)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "✓ PING processed by pong, now in #pong.ponging (in ")

	r = runCmd(t, "", args(flag, "send", "pong", "STOP", "--json")...)
	var doc sendResult
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 || !doc.OK || doc.NewState != "#pong.done" || doc.DeliveredTo != "pong" {
		t.Fatalf("exit %d, %v: %s", r.code, err, r.stdout)
	}
	r = runCmd(t, "", args(flag, "send", "pong", "PING")...)
	if r.code != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stdout)
	}
	wantLines(t, r.stdout, "✗ PING not processed by pong: orchestrator: machine stopped: pong takes no more events ("+statechart.ErrDone.Error()+")")
}
