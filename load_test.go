package statebus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// TestLoad: 10 senders x 10 receivers, every sender sending each receiver
// n events: every event delivered exactly once, in order per sender. The
// normal suite runs n = 1,000; STATEBUS_LOAD_FULL=1 runs the full 100,000
// (10,000,000 events).
func TestLoad(t *testing.T) {
	n := 1000
	if v, _ := strconv.Atoi(os.Getenv("STATEBUS_LOAD_N")); v > 0 {
		n = v // for profiling at other sizes
	}
	if os.Getenv("STATEBUS_LOAD_FULL") == "1" {
		n = 100_000
	} else if testing.Short() {
		t.Skip("short")
	}
	const senders, receivers = 10, 10
	srv := bustest.Start(t, nil)
	var refused atomic.Int64
	total := int64(senders * receivers * n)
	var got, bad atomic.Int64
	done := make(chan struct{})
	for r := range receivers {
		c := dial(t, srv, fmt.Sprintf("recv-%d", r))
		next := make([]int, senders) // dispatch is sequential per client
		c.OnEvent("LOAD", func(e statebus.Event) {
			// Payload is "S:N": sender index and sequence number.
			p := string(e.Payload[1 : len(e.Payload)-1])
			var s, seq int
			for i := 0; i < len(p); i++ {
				if p[i] == ':' {
					s, _ = strconv.Atoi(p[:i])
					seq, _ = strconv.Atoi(p[i+1:])
				}
			}
			if seq != next[s] {
				bad.Add(1)
			}
			next[s] = seq + 1
			if got.Add(1) == total {
				close(done)
			}
		})
	}
	var wg sync.WaitGroup
	start := time.Now()
	for s := range senders {
		c := dial(t, srv, fmt.Sprintf("send-%d", s), statebus.WithErrorHandler(func(error) { refused.Add(1) }))
		wg.Add(1)
		go func() {
			defer wg.Done()
			targets := make([]string, receivers)
			for r := range targets {
				targets[r] = fmt.Sprintf("recv-%d", r)
			}
			for seq := range n {
				p := []byte(strconv.Quote(strconv.Itoa(s) + ":" + strconv.Itoa(seq)))
				for _, target := range targets {
					if err := c.PostEvent(context.Background(), target, "LOAD", jsonRaw(p)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("delivered %d/%d", got.Load(), total)
	}
	elapsed := time.Since(start)
	t.Logf("%d senders x %d receivers x %d events: %d delivered in %v (%.0f events/s), %d out of order, %d refused",
		senders, receivers, n, got.Load(), elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), bad.Load(), refused.Load())
	if bad.Load() != 0 || refused.Load() != 0 {
		t.Fatalf("%d events out of order or duplicated, %d refused", bad.Load(), refused.Load())
	}
	if h := srv.Health(); h.ConnectionCount != senders+receivers {
		t.Fatalf("health %+v", h)
	}
}

func jsonRaw(b []byte) any { return json.RawMessage(b) }
