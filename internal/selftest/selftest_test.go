package selftest

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, bustest.IgnoreWinio) }

func TestRunPasses(t *testing.T) {
	var out bytes.Buffer
	if !Run(context.Background(), &out, Options{Messages: 2000}) {
		t.Fatalf("self-test failed:\n%s", &out)
	}
	text := out.String()
	for _, want := range []string{
		"✓ registration: ",
		"✓ error text: target not connected: \"Target machine not connected: st-missing-",
		"✓ error text: id in use: \"Machine id already in use: st-a-",
		"✓ ping-pong: received 5/5 PONGs, clean shutdown\n",
		"✓ broadcast (5 clients): 20/20 messages delivered\n",
		"✓ stress (2,000 events): 2,000/2,000 delivered in order",
		"✓ health connection count: ConnectionCount 0 -> 3 -> 0",
		"✓ shutdown: bus stopped and " + busaddr.Noun + " removed\n",
		"✓ 12/12 checks passed\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Errorf("colour codes without Color:\n%s", text)
	}
}

func TestRunJSON(t *testing.T) {
	var out bytes.Buffer
	if !Run(context.Background(), &out, Options{Messages: 500, JSON: true}) {
		t.Fatalf("self-test failed:\n%s", &out)
	}
	var rep Report
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Error("more than one JSON document")
	}
	if !rep.OK || rep.Passed != rep.Total || rep.Total != len(rep.Checks) || rep.Total < 10 {
		t.Errorf("report: %+v", rep)
	}
}

// A context that is already over fails every check but still cleans up.
func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if Run(ctx, &out, Options{Messages: 10}) {
		t.Fatalf("passed with a canceled context:\n%s", &out)
	}
	if !strings.Contains(out.String(), " checks passed\n") || !strings.Contains(out.String(), "✗") {
		t.Errorf("output:\n%s", &out)
	}
}

func TestScenariosOnSharedBus(t *testing.T) {
	srv := bustest.Start(t, nil)
	opt := statebus.WithPipeName(srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Two runs at once on one bus must not collide on machine ids.
	type out struct {
		p PingResult
		b BroadcastResult
		s StressResult
	}
	results := make(chan out, 2)
	for range 2 {
		go func() {
			results <- out{PingPong(ctx, 5, opt), Broadcast(ctx, 5, opt), Stress(ctx, 1000, opt)}
		}()
	}
	for range 2 {
		r := <-results
		if !r.p.OK() || r.p.Pongs != 5 || len(r.p.RoundTrips) != 5 {
			t.Errorf("ping-pong: %+v", r.p)
		}
		if !r.b.OK() || r.b.Delivered != 20 {
			t.Errorf("broadcast: %+v", r.b)
		}
		for i, n := range r.b.Received {
			if n != 4 {
				t.Errorf("%s received %d, want 4", r.b.Clients[i], n)
			}
		}
		if !r.s.OK() || r.s.Received != 1000 || len(r.s.Latencies) != 1000 {
			t.Errorf("stress: sent %d received %d errors %v", r.s.Sent, r.s.Received, r.s.Errors)
		}
		if r.s.Percentile(50) > r.s.Percentile(99) || r.s.Percentile(99) > r.s.Latencies[999] || r.s.Throughput() <= 0 {
			t.Errorf("stress stats: p50 %v p99 %v max %v", r.s.Percentile(50), r.s.Percentile(99), r.s.Latencies[999])
		}
	}
}

func TestScenariosWithoutBus(t *testing.T) {
	opt := statebus.WithPipeName(bustest.SocketPath(t))
	ctx := context.Background()
	if r := PingPong(ctx, 5, opt); r.OK() || len(r.Errors) == 0 || !strings.Contains(r.Errors[0], "is statebusd running?") {
		t.Errorf("ping-pong without a bus: %+v", r)
	}
	if r := Stress(ctx, 10, opt); r.OK() || len(r.Errors) == 0 {
		t.Errorf("stress without a bus: %+v", r)
	}
	if r := Broadcast(ctx, 5, opt); r.OK() || len(r.Errors) == 0 {
		t.Errorf("broadcast without a bus: %+v", r)
	}
}

func TestCommas(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1832: "1,832", 1234567: "1,234,567", -10000: "-10,000"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
}
