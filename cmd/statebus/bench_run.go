package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/schollz/progressbar/v3"

	"github.com/statebus/statebus"
)

// benchSampleEvery: one event in this many carries its send time when
// the publishers are not paced.
const benchSampleEvery = 64

// benchClient is one connection and what it counted.
type benchClient struct {
	c    *statebus.Client
	role string // "pub" or "sub"
	want int64  // events (round trips, requests answered) it should get

	n    atomic.Int64 // received (subscribers), round trips (requesters), answered (responders)
	sent atomic.Int64 // publishers, requesters: events (requests) sent

	// mu guards the fields below: taken for a sampled event, for the
	// last one, and for the final merge, not per event.
	mu   sync.Mutex
	hist *hdrhistogram.Histogram
	last time.Time // when the last event arrived (its want-th), or the last send returned
	bad  int64     // events whose payload was not a bench payload

	refused atomic.Int64 // refusals the service sent
	errMu   sync.Mutex
	err     error // the first refusal or failure
}

func (b *benchClient) fail(err error) {
	b.refused.Add(1)
	b.errMu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.errMu.Unlock()
}

// record counts an event with payload p. Only a stamped event, a foreign
// payload or the last event the client wants reads the clock and takes
// the lock.
func (b *benchClient) record(p []byte) {
	n := b.n.Add(1)
	t, stamped, ok := benchStampOf(p)
	if ok && !stamped && n != b.want {
		return
	}
	now := time.Now()
	b.mu.Lock()
	switch {
	case !ok:
		b.bad++
	case stamped:
		b.observe(now.UnixNano() - t)
	}
	if n == b.want {
		b.last = now
	}
	b.mu.Unlock()
}

// observe records a latency of ns nanoseconds; b.mu is held.
func (b *benchClient) observe(ns int64) {
	// Clamp: the histogram tracks 1 ns to its highest value.
	b.hist.RecordValue(min(max(ns, 1), b.hist.HighestTrackableValue()))
}

// answered counts a request a responder answered.
func (b *benchClient) answered() {
	if b.n.Add(1) == b.want {
		b.setLast(time.Now())
	}
}

func (b *benchClient) setLast(t time.Time) {
	b.mu.Lock()
	b.last = t
	b.mu.Unlock()
}

// benchPacer paces a publisher at rate events per second: before every
// batch-th event it reads the clock and sleeps until that event is due.
// Without a rate it does nothing.
type benchPacer struct {
	rate, batch int64
	start       time.Time
	timer       *time.Timer
}

func newBenchPacer(rate int64) *benchPacer {
	return &benchPacer{rate: rate, batch: max(1, rate/1000)} // a millisecond's worth
}

// wait is called before event k (from 0). When k starts a batch it
// returns the time it is sent at and true.
func (p *benchPacer) wait(ctx context.Context, k int64) (time.Time, bool, error) {
	if p.rate == 0 || k%p.batch != 0 {
		return time.Time{}, false, nil
	}
	now := time.Now()
	if k == 0 {
		p.start = now
		return now, true, nil
	}
	due := p.start.Add(time.Duration(k * int64(time.Second) / p.rate))
	if d := due.Sub(now); d > 0 {
		if p.timer == nil {
			p.timer = time.NewTimer(d)
		} else {
			p.timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return now, false, ctx.Err()
		case <-p.timer.C:
		}
		now = time.Now()
	}
	return now, true, nil
}

// benchShare is publisher i's share of msgs.
func benchShare(msgs int64, pubs, i int) int64 {
	n := msgs / int64(pubs)
	if int64(i) < msgs%int64(pubs) {
		n++
	}
	return n
}

// benchUnicastWant is how many events subscriber j receives in unicast,
// where publisher i's k-th event goes to subscriber (i+k) % subs.
func benchUnicastWant(msgs int64, pubs, subs, j int) int64 {
	var want int64
	for i := range pubs {
		c := benchShare(msgs, pubs, i)
		want += c / int64(subs)
		// The first c % subs events go to subscribers i, i+1, ...
		if off := (j - i%subs + subs) % subs; int64(off) < c%int64(subs) {
			want++
		}
	}
	return want
}

// benchAnswers is how many requests responder j answers in reqrep, where
// requester i asks responder i % subs.
func benchAnswers(msgs int64, pubs, subs, j int) int64 {
	var want int64
	for i := j; i < pubs; i += subs {
		want += benchShare(msgs, pubs, i)
	}
	return want
}

// benchRunID names a run's machine ids, so two runs on one bus do not
// collide.
func benchRunID() string {
	return fmt.Sprintf("bench-%d-%04x", os.Getpid(), rand.IntN(1<<16))
}

// benchOptions are the options of every bench client, after cfg.bus.
func benchOptions(cfg benchConfig, b *benchClient) []statebus.Option {
	return append(slices.Clip(cfg.bus),
		statebus.WithProcessName("statebus bench"),
		statebus.WithErrorHandler(b.fail),
		// A run measures one connection per client: a reconnection
		// in the middle would hide the loss behind a pause.
		statebus.WithReconnect(false))
}

// benchDial connects the publishers and the subscribers; with an error,
// the clients connected so far are returned for closing.
func benchDial(ctx context.Context, cfg benchConfig) (pubs, subs []*benchClient, err error) {
	run := benchRunID()
	dial := func(role string, i int, want int64) (*benchClient, error) {
		b := &benchClient{role: role, want: want}
		if (role == "sub") != (cfg.mode == "reqrep") { // a receiver
			b.hist = benchHistogram()
		}
		opts := benchOptions(cfg, b)
		if role == "sub" && cfg.subPipe != "" {
			opts = append(opts, statebus.WithPipeName(cfg.subPipe))
		}
		c, err := statebus.Dial(ctx, fmt.Sprintf("%s-%s-%d", run, role, i), opts...)
		if err != nil {
			return nil, err
		}
		if cfg.framing == "compact" && c.Framing() != statebus.FramingCompact {
			c.Close()
			return nil, fmt.Errorf("--framing compact: the service does not offer the compact framing (its MessageBus:CompactFraming is off, or it is not statebusd); measure with --framing json")
		}
		b.c = c
		return b, nil
	}
	for j := range cfg.subs {
		var want int64
		switch {
		case cfg.mode == "reqrep":
			want = benchAnswers(cfg.msgs, cfg.pubs, cfg.subs, j)
		case cfg.mode == "broadcast":
			want = cfg.msgs
		case cfg.pairs > 0:
			want = benchShare(cfg.msgs, cfg.pubs, j)
		default:
			want = benchUnicastWant(cfg.msgs, cfg.pubs, cfg.subs, j)
		}
		b, err := dial("sub", j, want)
		if err != nil {
			return pubs, subs, err
		}
		subs = append(subs, b)
	}
	for i := range cfg.pubs {
		var want int64
		if cfg.mode == "reqrep" {
			want = benchShare(cfg.msgs, cfg.pubs, i)
		}
		b, err := dial("pub", i, want)
		if err != nil {
			return pubs, subs, err
		}
		pubs = append(pubs, b)
	}
	return pubs, subs, nil
}

// benchRun runs the workload on connected clients and measures it. It
// returns the result and what went wrong besides lost events.
func benchRun(ctx context.Context, e *env, cfg benchConfig, pubs, subs []*benchClient) (benchResult, []string) {
	receivers := subs
	if cfg.mode == "reqrep" {
		receivers = pubs
		for _, s := range subs {
			s.c.HandleRequest("REQ", func(_ context.Context, ev statebus.Event) (any, error) {
				s.answered()
				return ev.Payload, nil
			})
		}
	} else {
		for _, s := range subs {
			s.c.OnEvent("BENCH", func(ev statebus.Event) { s.record(ev.Payload) })
		}
	}
	var total int64
	for _, r := range receivers {
		total += r.want
	}

	var bar *progressbar.ProgressBar
	if e.tty && !cfg.json {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(e.stdout),
			progressbar.OptionSetDescription(cfg.mode), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("msgs"),
			progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}

	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if cfg.mode == "reqrep" {
				err = benchRequest(ctx, cfg, p, subs[i%len(subs)].c.ID())
			} else {
				err = benchPublish(ctx, cfg, p, i, subs)
			}
			if err != nil && ctx.Err() == nil {
				p.fail(err)
			}
		}()
	}
	pubsDone := make(chan struct{})
	go func() { wg.Wait(); close(pubsDone) }()
	lastGrew := benchWait(ctx, cfg, receivers, total, pubsDone, bar)
	<-pubsDone // publishers return at once when ctx ends
	if errors.Is(context.Cause(ctx), context.Canceled) {
		// Interrupted: give what is in flight a moment to arrive, so it
		// is counted as delivered, not as missing.
		wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
		drain := cfg
		drain.straggler = min(cfg.straggler, 200*time.Millisecond)
		if t := benchWait(wctx, drain, receivers, benchSentTotal(cfg, pubs), pubsDone, bar); t.After(lastGrew) {
			lastGrew = t
		}
		wcancel()
	}
	if bar != nil {
		bar.Clear()
	}

	// Stop the clients so no handler runs during the merge.
	for _, b := range append(subs, pubs...) {
		b.c.Close()
	}
	return benchSummarize(cfg, start, lastGrew, pubs, subs, receivers)
}

// benchSentTotal is how many events the receivers should have for what
// the publishers sent (requests, in reqrep).
func benchSentTotal(cfg benchConfig, pubs []*benchClient) int64 {
	var sent int64
	for _, p := range pubs {
		sent += p.sent.Load()
	}
	if cfg.mode == "broadcast" {
		sent *= int64(cfg.subs)
	}
	return sent
}

// benchPublish sends publisher i's share, pipelined (paced with --rate).
// One event in benchSampleEvery, or the first of each paced batch,
// carries its send time; the others read no clock.
func benchPublish(ctx context.Context, cfg benchConfig, p *benchClient, i int, subs []*benchClient) error {
	buf := benchPayload(cfg.size)
	var payload any = json.RawMessage(buf) // stamped in place: no allocation per event
	ids := make([]string, len(subs))
	for j, s := range subs {
		ids[j] = s.c.ID()
	}
	n := benchShare(cfg.msgs, cfg.pubs, i)
	pace := newBenchPacer(cfg.rate)
	var sent int64
	defer func() {
		p.sent.Store(sent)
		p.setLast(time.Now())
	}()
	for ; sent < n; sent++ {
		now, stamp, err := pace.wait(ctx, sent)
		if err != nil {
			return err
		}
		if cfg.rate == 0 && sent%benchSampleEvery == 0 {
			now, stamp = time.Now(), true
		}
		if stamp {
			benchStamp(buf, now)
		} else {
			benchUnstamp(buf)
		}
		if err := p.c.PostEvent(ctx, benchTarget(&cfg, ids, i, sent), "BENCH", payload); err != nil {
			if !errors.Is(err, statebus.ErrTooLarge) {
				return err
			}
			p.fail(err) // refused before it was written: lost, as if the service had refused it
		}
	}
	return nil
}

// benchTarget is where publisher i sends its k-th event, ids being the
// subscribers'.
func benchTarget(cfg *benchConfig, ids []string, i int, k int64) string {
	switch {
	case cfg.mode == "broadcast":
		return "*"
	case cfg.pairs > 0:
		return ids[i]
	}
	return ids[(int64(i)+k)%int64(len(ids))]
}

// benchRequest does requester p's round trips (Request / HandleRequest)
// one at a time (paced with --rate), timing each. A reply that does not
// come within --wait ends them.
func benchRequest(ctx context.Context, cfg benchConfig, p *benchClient, responder string) error {
	payload := json.RawMessage(benchPayload(cfg.size))
	pace := newBenchPacer(cfg.rate)
	defer func() { p.setLast(time.Now()) }()
	for k := range p.want {
		t0, read, err := pace.wait(ctx, k)
		if err != nil {
			return err
		}
		if !read {
			t0 = time.Now()
		}
		p.sent.Add(1)
		rctx, cancel := context.WithTimeout(ctx, cfg.straggler)
		rep, err := p.c.Request(rctx, responder, "REQ", payload)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("request to %s: %w", responder, err)
		}
		d := time.Since(t0)
		p.n.Add(1)
		p.mu.Lock()
		if _, _, ok := benchStampOf(rep.Payload); ok {
			p.observe(int64(d))
		} else {
			p.bad++
		}
		p.mu.Unlock()
	}
	return nil
}

// benchWait returns when every receiver has its events, when ctx ends, or
// when the publishers are done and nothing arrived for --wait. It returns
// when it last saw the count grow (to 10 ms), the end of a run whose
// receivers did not all get their events.
func benchWait(ctx context.Context, cfg benchConfig, receivers []*benchClient, total int64, pubsDone <-chan struct{}, bar *progressbar.ProgressBar) (grew time.Time) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var prev int64
	lastChange := time.Now()
	for {
		var got int64
		for _, r := range receivers {
			got += r.n.Load()
		}
		if bar != nil {
			bar.Set64(got)
		}
		now := time.Now()
		if got != prev {
			prev, grew, lastChange = got, now, now
		}
		if got >= total {
			return grew
		}
		select {
		case <-pubsDone:
			if cfg.mode == "reqrep" || now.Sub(lastChange) >= cfg.straggler {
				return grew
			}
		default:
			lastChange = now // the publishers' own pace is not a stall
		}
		select {
		case <-ctx.Done():
			return grew
		case <-tick.C:
		}
	}
}
