package statebus_test

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// TestSlowHandlerBounded: a handler blocks while 200,000 events arrive.
// The client holds at most its pending limit, drops the rest, counts
// them, and reports a slow consumer a few times, not once per drop.
func TestSlowHandlerBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n = 200_000
	srv := bustest.Start(t, nil)
	var reports atomic.Int64
	var lastReport atomic.Value
	release := make(chan struct{})
	var handled atomic.Int64
	r := dial(t, srv, "receiver", statebus.WithErrorHandler(func(err error) {
		var sc *statebus.SlowConsumerError
		if errors.As(err, &sc) && errors.Is(err, statebus.ErrSlowConsumer) {
			reports.Add(1)
			lastReport.Store(sc)
		}
	}))
	r.OnEvent("E", func(statebus.Event) {
		if handled.Add(1) == 1 {
			<-release
		}
	})
	s := dial(t, srv, "sender")
	payload := json.RawMessage(`"` + strings.Repeat("x", 254) + `"`)
	// 200,000 sends under -race on a busy 2-core machine can take well over
	// ctx's 30 s; the bound here is on memory, not speed.
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := heapInUse()
	start := time.Now()
	for i := range n {
		var err error
		if i%10_000 == 9_999 {
			err = s.SendEvent(sctx, "receiver", "E", payload) // acknowledged: written to the receiver
		} else {
			err = s.PostEvent(sctx, "receiver", "E", payload)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Everything arrived: waiting, being handled (the first), or dropped.
	var msgs, bytes int
	bustest.Eventually(t, 60*time.Second, func() bool {
		msgs, bytes = r.Pending()
		return uint64(msgs)+r.Dropped() == n
	}, "pending %d + dropped %d != %d", msgs, r.Dropped(), n)
	peak := heapInUse()
	t.Logf("%d events in %v: %d pending (%d bytes), %d dropped; heap in use %d MiB before, %d MiB with the handler stuck",
		n, time.Since(start).Round(time.Millisecond), msgs, bytes, r.Dropped(), before>>20, peak>>20)
	if msgs > statebus.DefaultPendingEvents || bytes > statebus.DefaultPendingBytes {
		t.Fatalf("%d events (%d bytes) pending, over the limits %d and %d", msgs, bytes, statebus.DefaultPendingEvents, statebus.DefaultPendingBytes)
	}
	if r.Dropped() == 0 {
		t.Fatal("nothing dropped")
	}
	// Unbounded, 200,000 events of this size take over 80 MiB here (their
	// payloads, Event values and a queue grown by doubling); bounded, the
	// 65,536 kept take about 30.
	if grew := int64(peak) - int64(before); grew > 56<<20 {
		t.Fatalf("the heap grew by %d MiB while the handler was stuck", grew>>20)
	}
	close(release)
	bustest.Eventually(t, 60*time.Second, func() bool {
		return uint64(handled.Load())+r.Dropped() == n && reports.Load() > 0
	}, "handled %d + dropped %d of %d; %d reports", handled.Load(), r.Dropped(), n, reports.Load())
	if elapsed := time.Since(start); reports.Load() > int64(elapsed/time.Second)+1 {
		t.Fatalf("%d slow-consumer reports in %v: not rate-limited", reports.Load(), elapsed)
	}
	sc := lastReport.Load().(*statebus.SlowConsumerError)
	if sc.Total != r.Dropped() || sc.ID != "receiver" || sc.MaxEvents != statebus.DefaultPendingEvents {
		t.Fatalf("report %+v, dropped %d", sc, r.Dropped())
	}
	t.Log(sc)
	if msgs, _ := r.Pending(); msgs != 0 {
		t.Fatalf("%d still pending", msgs)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSlowResponder: a request dropped for the pending limit is answered
// with an error at once, not left to time out.
func TestSlowResponder(t *testing.T) {
	srv := bustest.Start(t, nil)
	release := make(chan struct{})
	defer close(release)
	svc := dial(t, srv, "svc", statebus.WithPendingLimits(1, 0))
	svc.OnEvent("BLOCK", func(statebus.Event) { <-release })
	svc.HandleRequest("Q", func(context.Context, statebus.Event) (any, error) { return 1, nil })
	caller := dial(t, srv, "caller")
	caller.SendEvent(ctx(t), "svc", "BLOCK", nil)
	done := make(chan error, 1)
	go func() {
		_, err := caller.Request(context.Background(), "svc", "Q", nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, statebus.ErrResponder) || !strings.Contains(err.Error(), "Request dropped: svc's handlers are not keeping up") {
			t.Fatalf("Request: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a dropped request was not answered")
	}
	if svc.Dropped() != 1 {
		t.Fatalf("dropped %d", svc.Dropped())
	}
}

// TestPayloadOnOneLine: a pretty-printed json.RawMessage (with newlines)
// is compacted onto the line, as an event's payload and as a request
// handler's reply; calls without a deadline get their answer.
func TestPayloadOnOneLine(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "a")
	b := dial(t, srv, "b")
	pretty := json.RawMessage("{\n  \"Message\": \"Hello\",\n  \"List\": [\n    1,\n    2\n  ]\n}\n")
	got := make(chan statebus.Event, 1)
	b.OnEvent("PRETTY", func(e statebus.Event) { got <- e })
	b.HandleRequest("Q", func(context.Context, statebus.Event) (any, error) { return pretty, nil })
	within(t, 10*time.Second, "SendEvent with a pretty payload", func() {
		if err := a.SendEvent(context.Background(), "b", "PRETTY", pretty); err != nil {
			t.Error(err)
		}
	})
	if e := <-got; string(e.Payload) != `{"Message":"Hello","List":[1,2]}` {
		t.Fatalf("payload %s", e.Payload)
	}
	within(t, 10*time.Second, "Request with a pretty payload and reply", func() {
		rep, err := a.Request(context.Background(), "b", "Q", pretty)
		if err != nil || string(rep.Payload) != `{"Message":"Hello","List":[1,2]}` {
			t.Errorf("reply %s, %v", rep.Payload, err)
		}
	})
}

// TestPayloadTooLarge: an event longer than the service takes is refused
// before it is written, with a clear error, as is a handler's reply that
// would be; one that fits exactly goes through. A service with a smaller
// limit than the client's is learnt from its refusal.
func TestPayloadTooLarge(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "a")
	b := dial(t, srv, "b")
	got := make(chan int, 1)
	b.OnEvent("BIG", func(e statebus.Event) { got <- len(e.Payload) })
	huge := json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)
	b.HandleRequest("Q", func(context.Context, statebus.Event) (any, error) { return huge, nil })
	within(t, 10*time.Second, "SendEvent and Request of 1 MiB", func() {
		err := a.SendEvent(context.Background(), "b", "BIG", huge)
		if !errors.Is(err, statebus.ErrTooLarge) || !strings.HasPrefix(err.Error(), `statebus: message too large: event "BIG" to "b" would take more than 1048`) ||
			!strings.Contains(err.Error(), "bytes on the wire, and the service takes at most 1048576 (its MaxMessageBytes") {
			t.Errorf("SendEvent: %v", err)
		}
		if _, err := a.Request(context.Background(), "b", "BIG", huge); !errors.Is(err, statebus.ErrTooLarge) {
			t.Errorf("Request: %v", err)
		}
		if err := a.PostEvent(context.Background(), "b", "BIG", huge); !errors.Is(err, statebus.ErrTooLarge) {
			t.Errorf("PostEvent: %v", err)
		}
		_, err = a.Request(context.Background(), "b", "Q", nil)
		var re *statebus.ResponderError
		if !errors.As(err, &re) || !strings.Contains(re.Message, "the reply is 1048578 bytes, over the 1048576-byte message limit") {
			t.Errorf("Request with a reply too large: %v", err)
		}
	})
	// Near the limit, whatever the client lets through the service takes:
	// a binary search for the largest payload never meets the service's
	// refusal, only the client's.
	str := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }
	lo, hi := 1<<20-400, 1<<20
	for lo+1 < hi {
		mid := (lo + hi) / 2
		err := a.SendEvent(ctx(t), "b", "BIG", str(mid))
		switch {
		case err == nil:
			lo = mid
			<-got
		case errors.Is(err, statebus.ErrTooLarge) && strings.Contains(err.Error(), "nothing was sent"):
			hi = mid
		default:
			t.Fatalf("%d bytes: %v", mid, err)
		}
	}
	t.Logf("largest payload sent: %d bytes", lo)

	// A service that takes less than the client thinks.
	small := bustest.Start(t, func(c *server.Config) { c.MaxMessageBytes = 64 << 10 })
	c := dial(t, small, "c")
	dial(t, small, "d")
	within(t, 10*time.Second, "SendEvent over a smaller service limit", func() {
		err := c.SendEvent(context.Background(), "d", "BIG", str(100<<10))
		if !errors.Is(err, statebus.ErrTooLarge) || err.Error() != "Message exceeds 65536 bytes" {
			t.Errorf("first SendEvent: %v", err)
		}
		err = c.SendEvent(context.Background(), "d", "BIG", str(70<<10))
		if !errors.Is(err, statebus.ErrTooLarge) || !strings.Contains(err.Error(), "the service takes at most 65536 ") {
			t.Errorf("second SendEvent: %v", err)
		}
	})
}

// TestPayloadTooDeep: a payload nested deeper than the service takes
// inside an event is refused before it is written (JSON lines), or by the
// service (compact framing).
func TestPayloadTooDeep(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "a", statebus.WithFraming(statebus.FramingJSON))
	c := dial(t, srv, "c")
	dial(t, srv, "b")
	nest := func(n int) json.RawMessage {
		return json.RawMessage(strings.Repeat("[", n) + `"]["` + strings.Repeat("]", n))
	}
	within(t, 10*time.Second, "SendEvent with deep payloads", func() {
		if err := a.SendEvent(context.Background(), "b", "E", nest(62)); err != nil {
			t.Errorf("62 levels: %v", err)
		}
		if err := a.SendEvent(context.Background(), "b", "E", nest(63)); err == nil || !strings.Contains(err.Error(), "nests more than 62 levels") {
			t.Errorf("63 levels: %v", err)
		}
		// On the compact framing the service refuses it, as deep for the
		// line a JSON receiver would get.
		if err := c.SendEvent(context.Background(), "b", "E", nest(62)); err != nil {
			t.Errorf("62 levels, compact: %v", err)
		}
		if err := c.SendEvent(context.Background(), "b", "E", nest(63)); !errors.Is(err, protocol.ErrTooDeep) {
			t.Errorf("63 levels, compact: %v", err)
		}
		var deep any = "x"
		for range 70 {
			deep = []any{deep}
		}
		if err := a.SendEvent(context.Background(), "b", "E", deep); err == nil {
			t.Error("70 levels, marshalled: accepted")
		}
	})
}

// within runs f and fails the test if it does not return in time: the
// calls under test use context.Background().
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	var once sync.Once
	go func() { f(); once.Do(func() { close(done) }) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}
