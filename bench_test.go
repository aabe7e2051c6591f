package statebus_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// payload128 is a 128-byte JSON payload.
var payload128 = json.RawMessage(`{"Message":"` + strings.Repeat("x", 128-14) + `"}`)

// BenchmarkUnicast measures delivered events per second, 1 sender -> 1
// receiver through a real statebusd, 128-byte payloads. The sender
// pipelines (PostEvent); the clock stops when the receiver has them all.
func BenchmarkUnicast(b *testing.B) {
	if len(payload128) != 128 {
		b.Fatalf("payload is %d bytes", len(payload128))
	}
	srv := bustest.Start(b, nil)
	benchUnicast(b, dial(b, srv, "sender"), dial(b, srv, "receiver"))
}

// benchUnicast is BenchmarkUnicast from a to r, wherever they connect.
func benchUnicast(b *testing.B, a, r *statebus.Client) {
	var got atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	r.OnEvent("E", func(statebus.Event) {
		if got.Add(1) == n {
			close(done)
		}
	})
	ctx := context.Background()
	b.SetBytes(int64(len(payload128)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := a.PostEvent(ctx, r.ID(), "E", payload128); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkSendEvent measures acknowledged sends: each SendEvent waits
// for the service's ack that the event was written to the receiver. With
// -cpu or parallelism > 1 calls overlap.
func BenchmarkSendEvent(b *testing.B) {
	srv := bustest.Start(b, nil)
	a := dial(b, srv, "sender")
	dial(b, srv, "receiver")
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.SendEvent(ctx, "receiver", "E", payload128); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkRoundTrip measures one event there and one back (PING/PONG),
// sequentially: the latency of the bus, twice.
func BenchmarkRoundTrip(b *testing.B) {
	srv := bustest.Start(b, nil)
	a := dial(b, srv, "a")
	r := dial(b, srv, "b")
	r.OnEvent("PING", func(e statebus.Event) {
		r.PostEvent(context.Background(), e.Source, "PONG", e.Payload)
	})
	pong := make(chan struct{}, 1)
	a.OnEvent("PONG", func(statebus.Event) { pong <- struct{}{} })
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		a.PostEvent(ctx, "b", "PING", payload128)
		<-pong
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/rtt")
}

// BenchmarkRequest measures request/reply round trips through the bus,
// one at a time: the caller's Request returns the responder's reply.
func BenchmarkRequest(b *testing.B) {
	srv := bustest.Start(b, nil)
	benchRequest(b, dial(b, srv, "caller"), dial(b, srv, "svc"))
}

// benchRequest is BenchmarkRequest from a to r, wherever they connect.
func benchRequest(b *testing.B, a, r *statebus.Client) {
	r.HandleRequest("Q", func(_ context.Context, e statebus.Event) (any, error) { return e.Payload, nil })
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := a.Request(ctx, r.ID(), "Q", payload128); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
}
