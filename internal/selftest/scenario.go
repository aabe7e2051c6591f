package selftest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus"
)

// runSeq makes machine ids unique within a process, so scenarios that run
// one after another (or at once) never wait for the service to release
// the previous run's ids.
var runSeq atomic.Uint64

// uniqueID returns base suffixed with the process id and a run number, so
// two runs, in one process or two, can share a bus.
func uniqueID(base string) string {
	return fmt.Sprintf("%s-%d-%d", base, os.Getpid(), runSeq.Add(1))
}

// with returns opts plus extra, and without reconnection: a scenario
// that loses its connection fails rather than waiting for the bus to
// come back.
func with(opts []statebus.Option, extra ...statebus.Option) []statebus.Option {
	all := append([]statebus.Option{statebus.WithReconnect(false)}, opts...)
	return append(all, extra...)
}

// errs collects the errors a scenario's clients report on their own
// goroutines: the "exceptions" the seed's clean-shutdown line is about.
type errs struct {
	mu   sync.Mutex
	list []string
}

func (e *errs) add(who string, err error) {
	e.mu.Lock()
	e.list = append(e.list, who+": "+err.Error())
	e.mu.Unlock()
}

func (e *errs) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

// handler returns an error handler that records under who.
func (e *errs) handler(who string) statebus.Option {
	return statebus.WithErrorHandler(func(err error) { e.add(who, err) })
}

// PingResult is the outcome of PingPong.
type PingResult struct {
	Pinger, Ponger string
	// Sent is how many PINGs were sent, PingsReceived how many the ponger
	// saw and Pongs how many PONGs came back.
	Sent, PingsReceived, Pongs int
	// RoundTrips are the PING-to-PONG times, in order.
	RoundTrips []time.Duration
	// CleanShutdown is true when both clients closed without any client
	// reporting an error during the run.
	CleanShutdown bool
	// Errors are what went wrong, if anything.
	Errors []string
}

// OK reports whether every PING got its PONG and shutdown was clean.
func (r *PingResult) OK() bool {
	return r.Sent > 0 && r.Pongs == r.Sent && r.PingsReceived == r.Sent && r.CleanShutdown
}

// PingPong is the seed's ping-pong test: two clients, one sends n PINGs,
// one at a time, and the other answers each with a PONG. It stops early
// when ctx ends.
func PingPong(ctx context.Context, n int, opts ...statebus.Option) PingResult {
	var (
		e   errs
		res = PingResult{Pinger: uniqueID("ping-client"), Ponger: uniqueID("pong-client")}
	)
	ponger, err := statebus.Dial(ctx, res.Ponger, with(opts, e.handler(res.Ponger))...)
	if err != nil {
		res.Errors = []string{err.Error()}
		return res
	}
	var pings atomic.Int64
	// answered gets a value once each PONG's acknowledgement is back (or
	// failed): the pinger can see a PONG before the ponger sees its ack,
	// and closing the ponger in between would fail that send.
	answered := make(chan struct{}, n)
	ponger.OnEvent("PING", func(ev statebus.Event) {
		pings.Add(1)
		var p struct{ Seq int }
		ev.Decode(&p)
		if err := ponger.SendEvent(ctx, ev.Source, "PONG", map[string]any{"Message": "PONG", "Seq": p.Seq}); err != nil {
			e.add(res.Ponger, err)
		}
		select {
		case answered <- struct{}{}:
		default:
		}
	})
	pinger, err := statebus.Dial(ctx, res.Pinger, with(opts, e.handler(res.Pinger))...)
	if err != nil {
		ponger.Close()
		res.Errors = []string{err.Error()}
		return res
	}
	pongs := make(chan struct{}, n)
	pinger.OnEvent("PONG", func(statebus.Event) {
		select {
		case pongs <- struct{}{}:
		default: // a PONG nobody asked for: ignored
		}
	})

	for i := 1; i <= n && ctx.Err() == nil; i++ {
		start := time.Now()
		if err := pinger.SendEvent(ctx, res.Ponger, "PING", map[string]any{"Message": "PING", "Seq": i}); err != nil {
			e.add(res.Pinger, err)
			break
		}
		res.Sent++
		select {
		case <-pongs:
			res.Pongs++
			res.RoundTrips = append(res.RoundTrips, time.Since(start))
		case <-ctx.Done():
		}
	}
	for range res.Pongs {
		select {
		case <-answered:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		e.add("scenario", fmt.Errorf("gave up waiting: %w", context.Cause(ctx)))
	}
	pinger.Close()
	ponger.Close()
	res.PingsReceived = int(pings.Load())
	res.Errors = e.all()
	res.CleanShutdown = len(res.Errors) == 0
	return res
}

// BroadcastResult is the outcome of Broadcast.
type BroadcastResult struct {
	// Clients are the clients' display names ("client-1"...), IDs their
	// machine ids.
	Clients, IDs []string
	// Received is how many events each client got from the others; Want
	// is how many each should get.
	Received []int
	Want     int
	// Delivered and Expected are the totals.
	Delivered, Expected int
	Elapsed             time.Duration
	Errors              []string
}

// OK reports whether every client got an event from every other.
func (r *BroadcastResult) OK() bool {
	return r.Expected > 0 && r.Delivered == r.Expected && len(r.Errors) == 0
}

// Broadcast is the seed's multi-client test: n clients each send one
// BROADCAST event to every other client, so each should receive n-1. The
// events go to each peer by id (the original protocol has no broadcast
// address), so other machines on a shared bus see nothing.
func Broadcast(ctx context.Context, n int, opts ...statebus.Option) BroadcastResult {
	res := BroadcastResult{Want: n - 1, Expected: n * (n - 1), Received: make([]int, n)}
	var e errs
	clients := make([]*statebus.Client, 0, n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	index := map[string]int{}
	for i := range n {
		res.Clients = append(res.Clients, fmt.Sprintf("client-%d", i+1))
		res.IDs = append(res.IDs, uniqueID(res.Clients[i]))
		index[res.IDs[i]] = i
	}
	var (
		mu      sync.Mutex
		total   int
		allDone = make(chan struct{})
	)
	for i, id := range res.IDs {
		c, err := statebus.Dial(ctx, id, with(opts, e.handler(id))...)
		if err != nil {
			res.Errors = []string{err.Error()}
			return res
		}
		c.OnEvent("BROADCAST", func(ev statebus.Event) {
			if _, ok := index[ev.Source]; !ok {
				return // not from this run
			}
			mu.Lock()
			defer mu.Unlock()
			res.Received[i]++
			total++
			if total == res.Expected {
				close(allDone)
			}
		})
		clients = append(clients, c)
	}

	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for j, to := range res.IDs {
				if j == i {
					continue
				}
				msg := map[string]any{"From": res.Clients[i], "Message": "Hello from " + res.Clients[i]}
				if err := c.SendEvent(ctx, to, "BROADCAST", msg); err != nil {
					e.add(res.IDs[i], err)
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-allDone:
	case <-ctx.Done():
		e.add("scenario", fmt.Errorf("gave up waiting: %w", context.Cause(ctx)))
	}
	res.Elapsed = time.Since(start)
	mu.Lock()
	res.Delivered = total
	res.Received = slices.Clone(res.Received)
	mu.Unlock()
	res.Errors = e.all()
	return res
}

// StressResult is the outcome of Stress.
type StressResult struct {
	Sender, Receiver string
	Sent, Received   int
	// InOrder is false if any event arrived out of the order it was sent.
	InOrder bool
	// Elapsed runs from the first send until the receiver had the last
	// event (or the run gave up).
	Elapsed time.Duration
	// Latencies are the per-event send-to-receive times, sorted.
	Latencies []time.Duration
	Errors    []string
}

// OK reports whether every event arrived, in order, without errors.
func (r *StressResult) OK() bool {
	return r.Sent > 0 && r.Received == r.Sent && r.InOrder && len(r.Errors) == 0
}

// Throughput is delivered events per second.
func (r *StressResult) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0-100) of the latencies.
func (r *StressResult) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Percentile returns the p-th percentile (0-100) of sorted: the smallest
// value at least p percent of the values are at or below.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Mean returns the mean latency.
func (r *StressResult) Mean() time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.Latencies {
		sum += d
	}
	return sum / time.Duration(len(r.Latencies))
}

// Stress is the seed's stress test measured by delivery: one client posts
// n events to another as fast as the bus takes them; the clock stops when
// the receiver has the last one. Each event carries its send time, so
// latency is per event, send to receive.
func Stress(ctx context.Context, n int, opts ...statebus.Option) StressResult {
	res := StressResult{Sender: uniqueID("stress-sender"), Receiver: uniqueID("stress-receiver"), InOrder: true}
	var e errs
	failed := make(chan struct{})
	var failOnce sync.Once
	fail := func(who string) statebus.Option {
		return statebus.WithErrorHandler(func(err error) {
			e.add(who, err)
			failOnce.Do(func() { close(failed) })
		})
	}
	recv, err := statebus.Dial(ctx, res.Receiver, with(opts, fail(res.Receiver))...)
	if err != nil {
		res.Errors = []string{err.Error()}
		return res
	}
	defer recv.Close()

	// The client's dispatch goroutine writes these; Close does not wait
	// for a handler that is running when it is called, so they are
	// guarded rather than handed over.
	var (
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n)
		next     = 1
		inOrder  = true
		lastRecv time.Time
		done     = make(chan struct{})
	)
	recv.OnEvent("STRESS", func(ev statebus.Event) {
		now := time.Now()
		var p struct {
			Seq    int
			SentNs int64
		}
		if ev.Source != res.Sender || ev.Decode(&p) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if len(lat) == n {
			return
		}
		lat = append(lat, time.Duration(now.UnixNano()-p.SentNs))
		if p.Seq != next {
			inOrder = false
		}
		next = p.Seq + 1
		if len(lat) == n {
			lastRecv = now
			close(done)
		}
	})

	send, err := statebus.Dial(ctx, res.Sender, with(opts, fail(res.Sender))...)
	if err != nil {
		res.Errors = []string{err.Error()}
		return res
	}
	start := time.Now()
	var buf []byte
	for i := 1; i <= n; i++ {
		buf = append(buf[:0], `{"Seq":`...)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, `,"SentNs":`...)
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		buf = append(buf, '}')
		if err := send.PostEvent(ctx, res.Receiver, "STRESS", json.RawMessage(buf)); err != nil {
			e.add(res.Sender, err)
			break
		}
		res.Sent++
	}
	complete := false
	select {
	case <-done:
		complete = true
	case <-failed:
	case <-ctx.Done():
		e.add("scenario", fmt.Errorf("gave up waiting: %w", context.Cause(ctx)))
	}
	send.Close()
	recv.Close()
	mu.Lock()
	defer mu.Unlock()
	if complete {
		res.Elapsed = lastRecv.Sub(start)
	} else {
		res.Elapsed = time.Since(start)
	}
	res.Received = len(lat)
	res.InOrder = inOrder
	slices.Sort(lat)
	res.Latencies = lat
	res.Errors = e.all()
	if !res.InOrder {
		res.Errors = append(res.Errors, "events arrived out of order")
	}
	return res
}
