package main

import (
	"bufio"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// stuckReceiver registers and subscribes id on a raw connection that then
// never reads again, and fills its socket with events from a client.
func stuckReceiver(t *testing.T, srv *server.Server, id string) {
	t.Helper()
	nc, err := busaddr.Dial(context.Background(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := bufio.NewReader(nc)
	for _, l := range []string{
		`{"Type":0,"Payload":{"MachineId":"` + id + `","ProcessName":"stuck","ProcessId":1}}`,
		`{"Type":3,"Payload":"` + id + `"}`,
	} {
		nc.Write([]byte(l + "\n"))
		if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, `"Success":true`) {
			t.Fatalf("%s: %q, %v", l, line, err)
		}
	}
	filler := dial(t, "filler", statebus.WithPipeName(srv.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := json.RawMessage(`"` + strings.Repeat("x", 60_000) + `"`)
	for range 40 { // 2.4 MB: more than the socket holds, less than the queue
		if err := filler.PostEvent(ctx, id, "FILL", big); err != nil {
			t.Fatal(err)
		}
	}
	// Posted is queued in the client: wait until the service has them all
	// queued for id, ahead of whatever the test sends next.
	bustest.Eventually(t, 10*time.Second, func() bool {
		return slices.ContainsFunc(srv.ConnStats(), func(cs server.ConnStat) bool { return cs.Received >= 40 })
	}, "the filler's events did not all reach the service")
}

// A send to a receiver that does not read says so, after --ack-timeout,
// not "Is statebusd overloaded?" after the whole --timeout.
func TestSendToStuckReceiver(t *testing.T) {
	srv := bustest.Start(t, nil)
	stuckReceiver(t, srv, "stuck")
	flag := []string{"--pipe-name", srv.Addr()}
	start := time.Now()
	r := runCmd(t, "", args(flag, "send", "--ack-timeout", "500ms", "stuck", "PING")...)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	wantLines(t, r.stderr, "✗ PING was not acknowledged within 500ms", ": stuck is connected but has not read it\n",
		"  stuck is not reading its events: check that its process is alive and not blocked.")
	if strings.Contains(r.stderr, "overloaded") {
		t.Errorf("blames the service:\n%s", r.stderr)
	}
}

// When the target's queue stays full, the service says so, and so does
// the hint.
func TestSendNotKeepingUp(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxQueueEvents = 16
		c.SlowConsumerTimeout = 200 * time.Millisecond
	})
	stuckReceiver(t, srv, "slow")
	filler := dial(t, "filler2", statebus.WithPipeName(srv.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 40 { // more than the queue takes
		filler.PostEvent(ctx, "slow", "FILL", nil)
	}
	flag := []string{"--pipe-name", srv.Addr()}
	r := runCmd(t, "", args(flag, "send", "slow", "PING")...)
	wantLines(t, r.stderr, "✗ Target machine is not keeping up: slow\n", "  slow is not reading its events: its queue stayed full")
}
