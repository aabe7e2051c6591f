package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/statebus/statebus/internal/selftest"
)

func init() {
	commands["test"] = command{"run the XStateNet test client's scenarios against a running statebusd", runTest}
}

// The seed's scenario sizes.
const (
	pingCount       = 5
	broadcastPeers  = 5
	defaultMessages = 100
)

func runTest(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "test", "ping | multi | stress [--messages N] | custom [flags]",
		`Runs one of the XStateNet test client's scenarios against a running statebusd,
with real clients under machine ids unique to the run:

  ping    two clients; one sends 5 PINGs, the other answers each with a PONG
  multi   5 clients each send a BROADCAST to the other 4: 20 deliveries
  stress  one client posts N events to another; reports delivered throughput
          and per-event latency (send to receive) as p50, p99 and max
  custom  type "send <target> <event> [message]" lines; received events are
          printed; "wait <event>" waits for one; "quit" or end of input leaves

Exits 1 if the scenario misses anything.`,
		`statebus test ping
statebus test stress --messages 10000 --json
printf 'send machine-b PING hello\nquit\n' | statebus test custom --as machine-a`)
	messages := f.Int("messages", defaultMessages, "stress: how many events to send")
	timeout := f.Duration("timeout", time.Minute, "give up on the scenario after this long")
	as := f.String("as", fmt.Sprintf("statebus-cli-%d", os.Getpid()), "custom: machine id to connect as")
	pos, code, ok := f.parse(args, 1, 1)
	if !ok {
		return code
	}
	if *messages < 1 {
		return f.fail("--messages must be at least 1, not %d", *messages)
	}
	o := stdout(e)
	if f.json {
		o = newOut(io.Discard, false)
	}
	var (
		doc    any
		passed bool
	)
	switch pos[0] {
	case "ping":
		doc, passed = scenarioPing(ctx, o, f, *timeout)
	case "multi":
		doc, passed = scenarioMulti(ctx, o, f, *timeout)
	case "stress":
		doc, passed = scenarioStress(ctx, o, f, *timeout, *messages)
	case "custom":
		if f.json {
			o = newOut(e.stderr, false) // the prompts
		}
		lr := newLineReader(e.stdin)
		defer lr.stop()
		doc, passed = scenarioCustom(ctx, o, f, lr, *as)
	default:
		return f.fail("unknown scenario %q: use ping, multi, stress or custom", pos[0])
	}
	if f.json {
		writeJSON(e.stdout, doc)
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return exitInterrupted
	case !passed:
		return 1
	}
	return 0
}

// latencyJSON is a latency summary in milliseconds.
type latencyJSON struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summarize returns the latency summary of ds.
func summarize(ds []time.Duration) latencyJSON {
	if len(ds) == 0 {
		return latencyJSON{}
	}
	s := slices.Sorted(slices.Values(ds))
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return latencyJSON{
		P50:  millis(selftest.Percentile(s, 50)),
		P99:  millis(selftest.Percentile(s, 99)),
		Max:  millis(s[len(s)-1]),
		Mean: millis(sum / time.Duration(len(s))),
	}
}

// printErrors lists a scenario's errors under its ✗ lines.
func printErrors(o *out, errs []string) {
	for _, e := range errs {
		o.printf("  error: %s\n", e)
	}
}

type pingJSON struct {
	Scenario      string      `json:"scenario"`
	OK            bool        `json:"ok"`
	Pinger        string      `json:"pinger"`
	Ponger        string      `json:"ponger"`
	Sent          int         `json:"pings_sent"`
	PingsReceived int         `json:"pings_received"`
	Pongs         int         `json:"pongs_received"`
	CleanShutdown bool        `json:"clean_shutdown"`
	RoundTripMs   latencyJSON `json:"round_trip_ms"`
	Errors        []string    `json:"errors"`
}

func scenarioPing(ctx context.Context, o *out, f *flags, timeout time.Duration) (any, bool) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("ping test took longer than --timeout %v", timeout))
	defer cancel()
	o.printf("Ping-pong test on %s\n", f.socket())
	r := selftest.PingPong(ctx, pingCount, f.bus()...)
	ok := r.OK()
	if r.Pongs == pingCount {
		o.check(true, "Test Complete! Received %d/%d PONGs", r.Pongs, pingCount)
	} else {
		o.check(false, "Test incomplete: received %d/%d PONGs", r.Pongs, pingCount)
	}
	if r.Sent > 0 && r.PingsReceived == r.Sent && r.Pongs == r.Sent {
		o.check(true, "Bidirectional communication working")
	} else {
		o.check(false, "Bidirectional communication failed: %s saw %d/%d PINGs, %s got %d PONGs",
			r.Ponger, r.PingsReceived, r.Sent, r.Pinger, r.Pongs)
	}
	if r.CleanShutdown {
		o.check(true, "Clean shutdown with no exceptions")
	} else {
		o.check(false, "Errors during the run:")
		printErrors(o, r.Errors)
	}
	doc := pingJSON{Scenario: "ping", OK: ok, Pinger: r.Pinger, Ponger: r.Ponger, Sent: r.Sent,
		PingsReceived: r.PingsReceived, Pongs: r.Pongs, CleanShutdown: r.CleanShutdown, Errors: nonNil(r.Errors)}
	doc.RoundTripMs = summarize(r.RoundTrips)
	return doc, ok
}

type multiJSON struct {
	Scenario  string           `json:"scenario"`
	OK        bool             `json:"ok"`
	Delivered int              `json:"delivered"`
	Expected  int              `json:"expected"`
	Seconds   float64          `json:"seconds"`
	Clients   []multiClientDoc `json:"clients"`
	Errors    []string         `json:"errors"`
}

type multiClientDoc struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Received int    `json:"received"`
	Expected int    `json:"expected"`
}

func scenarioMulti(ctx context.Context, o *out, f *flags, timeout time.Duration) (any, bool) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("multi-client test took longer than --timeout %v", timeout))
	defer cancel()
	o.printf("Multi-client broadcast test (%d clients) on %s\n", broadcastPeers, f.socket())
	r := selftest.Broadcast(ctx, broadcastPeers, f.bus()...)
	ok := r.OK()
	o.check(r.Expected > 0 && r.Delivered == r.Expected, "Total: %d/%d messages delivered", r.Delivered, r.Expected)
	doc := multiJSON{Scenario: "multi", OK: ok, Delivered: r.Delivered, Expected: r.Expected,
		Seconds: r.Elapsed.Seconds(), Clients: []multiClientDoc{}, Errors: nonNil(r.Errors)}
	for i, name := range r.Clients {
		o.printf("  %s: received %d/%d broadcasts %s\n", name, r.Received[i], r.Want, o.mark(r.Received[i] == r.Want))
		doc.Clients = append(doc.Clients, multiClientDoc{name, r.IDs[i], r.Received[i], r.Want})
	}
	if len(r.Errors) > 0 {
		o.check(false, "Errors during the run:")
		printErrors(o, r.Errors)
	}
	return doc, ok
}

type stressJSON struct {
	Scenario string `json:"scenario"`
	OK       bool   `json:"ok"`
	Messages int    `json:"messages"`
	Sent     int    `json:"sent"`
	Received int    `json:"received"`
	Lost     int    `json:"lost"`
	// Interrupted: stopped by Ctrl-C; Sent and Received are what happened
	// until then, and InFlight (sent, not received when it stopped) is
	// not counted as lost.
	Interrupted bool        `json:"interrupted,omitempty"`
	InFlight    int         `json:"in_flight,omitempty"`
	InOrder     bool        `json:"in_order"`
	Seconds     float64     `json:"seconds"`
	MsgsPerSec  float64     `json:"msgs_per_sec"`
	LatencyMs   latencyJSON `json:"latency_ms"`
	Errors      []string    `json:"errors"`
	SenderID    string      `json:"sender"`
	ReceiverID  string      `json:"receiver"`
}

func scenarioStress(parent context.Context, o *out, f *flags, timeout time.Duration, n int) (any, bool) {
	ctx, cancel := context.WithTimeoutCause(parent, timeout, fmt.Errorf("stress test took longer than --timeout %v", timeout))
	defer cancel()
	o.printf("Stress test (%d messages) on %s\n", n, f.socket())
	r := selftest.Stress(ctx, n, f.bus()...)
	interrupted := errors.Is(parent.Err(), context.Canceled)
	ok := r.OK() && r.Sent == n
	switch {
	case interrupted:
		o.check(false, "Interrupted after sending %d of %d messages", r.Sent, n)
		o.check(false, "Received: %d of the %d sent (%d in flight when stopped)", r.Received, r.Sent, r.Sent-r.Received)
		// What the interruption itself caused is not an error of the bus.
		r.Errors = slices.DeleteFunc(r.Errors, func(s string) bool { return strings.HasSuffix(s, context.Canceled.Error()) })
	case r.Received == n:
		o.check(r.Sent == n, "Sent: %d messages", r.Sent)
		o.check(true, "Received: %d messages", r.Received)
	default:
		o.check(r.Sent == n, "Sent: %d of %d messages", r.Sent, n)
		o.check(false, "Received: %d of the %d sent (%d lost)", r.Received, r.Sent, r.Sent-r.Received)
	}
	if !r.InOrder {
		o.check(false, "Events arrived out of order")
	}
	o.check(ok, "Time: %s", ms(r.Elapsed))
	o.check(ok, "Throughput: %s msg/sec", commas(int64(r.Throughput()+0.5)))
	lat := summarize(r.Latencies)
	if len(r.Latencies) > 0 {
		o.check(ok, "Latency: p50 %s, p99 %s, max %s per message (send to receive)",
			ms(r.Percentile(50)), ms(r.Percentile(99)), ms(r.Latencies[len(r.Latencies)-1]))
	}
	if len(r.Errors) > 0 {
		printErrors(o, r.Errors)
	}
	doc := stressJSON{Scenario: "stress", OK: ok, Messages: n, Sent: r.Sent, Received: r.Received,
		Lost: r.Sent - r.Received, InOrder: r.InOrder, Seconds: r.Elapsed.Seconds(), MsgsPerSec: r.Throughput(),
		LatencyMs: lat, Errors: nonNil(r.Errors), SenderID: r.Sender, ReceiverID: r.Receiver}
	if interrupted {
		doc.Interrupted, doc.InFlight, doc.Lost = true, doc.Lost, 0
	}
	return doc, ok
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
