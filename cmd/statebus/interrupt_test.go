package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// runInterrupted runs args and cancels its context, as Ctrl-C does, after
// d.
func runInterrupted(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(d, cancel)
	e, out, errOut := newEnv("")
	code := run(ctx, e, args)
	return result{code, out.String(), errOut.String()}
}

// Ctrl-C during bench reports what was sent and delivered until then;
// the events never sent are not "lost".
func TestBenchInterrupted(t *testing.T) {
	r := runInterrupted(t, 700*time.Millisecond, "bench", "--inproc", "--msgs", "50000000", "--size", "32")
	if r.code != exitInterrupted {
		t.Errorf("exit %d, want %d: %s", r.code, exitInterrupted, r.stderr)
	}
	wantLines(t, r.stdout, "interrupted: sent ", " of 50,000,000 events; delivered ", " in flight when stopped\n")
	wantLines(t, r.stderr, "statebus bench: interrupted\n")
	if strings.Contains(r.stdout, "lost") {
		t.Errorf("reports lost events:\n%s", r.stdout)
	}

	r = runInterrupted(t, 700*time.Millisecond, "bench", "--inproc", "--msgs", "50000000", "--size", "32", "--json")
	var res benchResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != exitInterrupted {
		t.Fatalf("exit %d, %v: %s", r.code, err, r.stdout)
	}
	if !res.Interrupted || res.Lost != 0 || res.Sent <= 0 || res.Sent >= res.Msgs || res.InFlight > res.Sent {
		t.Errorf("--json: %+v", res)
	}
}

// Ctrl-C during test stress: sent and received until then, no "lost".
func TestStressInterrupted(t *testing.T) {
	flag, _ := startBus(t)
	r := runInterrupted(t, 700*time.Millisecond, args(flag, "test", "stress", "--messages", "2000000")...)
	if r.code != exitInterrupted {
		t.Errorf("exit %d, want %d: %s%s", r.code, exitInterrupted, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "✗ Interrupted after sending ", " of 2000000 messages\n", " in flight when stopped)\n")
	if strings.Contains(r.stdout, "lost") || strings.Contains(r.stdout, "error:") {
		t.Errorf("reports losses or errors:\n%s", r.stdout)
	}
	r = runInterrupted(t, 700*time.Millisecond, args(flag, "test", "stress", "--messages", "2000000", "--json")...)
	var doc stressJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitInterrupted {
		t.Fatalf("exit %d, %v: %s", r.code, err, r.stdout)
	}
	if !doc.Interrupted || doc.Lost != 0 || doc.Sent <= 0 || doc.Sent >= doc.Messages || len(doc.Errors) != 0 {
		t.Errorf("--json: %+v", doc)
	}
}
