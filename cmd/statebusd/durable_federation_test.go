//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/fedtest"
)

// dedupReceiver is a durable receiver that may move between daemons: it
// keeps the highest sequence it handled across its clients (as an
// application that persists it would) and drops what comes again.
type dedupReceiver struct {
	mu      sync.Mutex
	last    uint64
	got     []int    // payloads handled, in order
	seqs    []uint64 // their sequences
	dropped int      // duplicates dropped
}

func (r *dedupReceiver) handle(e statebus.Event) {
	v, _ := strconv.Atoi(string(e.Payload))
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Sequence <= r.last {
		r.dropped++
		return
	}
	r.last = e.Sequence
	r.got = append(r.got, v)
	r.seqs = append(r.seqs, e.Sequence)
}

func (r *dedupReceiver) has(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got) >= n
}

// TestDurableFederationKilled: three statebusd processes in a federation
// (embedded NATS, R3 streams, DurableSync always), ctl durable by
// configuration. A sender on n1 stores events while ctl is offline; ctl
// connects on n3 and gets them in order while the sender goes on; n3 is
// SIGKILLed mid-stream; ctl connects again on n2 (once n3's lease on it
// lapsed) and gets everything after what it handled: every event whose
// "Stored" acknowledgement the sender read is handled exactly once
// (after dedup by sequence) and in order.
func TestDurableFederationKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three statebusd processes with nats-server nodes")
	}
	const offline, stream = 5_000, 30_000
	dir := shortDir(t)
	cfg := filepath.Join(dir, "statebusd.json")
	os.WriteFile(cfg, []byte(`{"MessageBus": {"Durable": ["ctl*"], "DurableMaxEvents": 1000000, "DurableMaxBytes": 1073741824}}`), 0o600)
	var specs []fedSpec
	for i, p := range fedtest.FreePorts(t, 3) {
		specs = append(specs, fedSpec{route: "127.0.0.1:" + strconv.Itoa(p), lease: partitionLease,
			args: []string{"--durable-dir", filepath.Join(dir, "n"+strconv.Itoa(i+1)+"-dur"), "--config", cfg}})
	}
	ps := startFedProcs(t, dir, specs)

	snd := &rawSender{acked: map[int]bool{}}
	snd.run(t, ps[0].sock, "src", "ctl", 0, offline)
	if snd.count() != offline {
		t.Fatalf("%d of %d stored while ctl was away; first refusal: %v", snd.count(), offline, snd.bad)
	}

	rec := &dedupReceiver{}
	connect := func(p *fedProc, timeout time.Duration) *statebus.Client {
		var c *statebus.Client
		bustest.Eventually(t, timeout, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			c, err = statebus.Dial(ctx, "ctl", statebus.WithPipeName(p.sock), statebus.WithDurable(),
				statebus.WithReconnect(false), statebus.WithPendingLimits(1<<20, 1<<30))
			return err == nil
		}, "ctl never connected on %s", p.name)
		c.OnEvent("E", rec.handle)
		return c
	}
	ctl := connect(ps[2], 20*time.Second)
	bustest.Eventually(t, 60*time.Second, func() bool { return rec.has(offline) }, "ctl on n3 handled %d of %d", lazy(func() any { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.got) }), offline)

	sent := make(chan struct{})
	go func() { defer close(sent); snd.run(t, ps[0].sock, "src", "ctl", offline, offline+stream) }()
	bustest.Eventually(t, 60*time.Second, func() bool { return rec.has(offline + stream/3) }, "ctl on n3 never handled a third of the stream")
	rec.mu.Lock()
	atKill := len(rec.got)
	rec.mu.Unlock()
	ps[2].kill()
	ctl.Close()
	ctl = connect(ps[1], partitionLease*time.Second+60*time.Second)
	defer ctl.Close()
	<-sent
	acked := snd.count()
	maxAcked := 0
	for v := range snd.acked {
		maxAcked = max(maxAcked, v)
	}
	bustest.Eventually(t, 120*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.got) > 0 && rec.got[len(rec.got)-1] >= maxAcked
	}, "ctl on n2 never got the last acknowledged event %d", maxAcked)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, s := range rec.seqs {
		if s != uint64(i+1) {
			t.Fatalf("handled sequence %d as the %dth event", s, i+1)
		}
	}
	missing, unacked := snd.tally(t, rec.got)
	t.Logf("%d stored while ctl was away; n3 (holding ctl) killed when ctl had handled %d; %d of %d events acknowledged \"Stored\", %d refused or unanswered (first: %v); ctl handled %d once each and in order (%d duplicates dropped by sequence after the move to n2; %d stored without their sender knowing); %d acknowledged but not handled",
		offline, atKill, acked, offline+stream, len(snd.bad), first(snd.bad), len(rec.got), rec.dropped, unacked, missing)
	if missing > 0 {
		t.Fatalf("%d acknowledged events were not handled", missing)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return s[0]
}
