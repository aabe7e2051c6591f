package dashboard

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/server"
)

// measureScript watches the page from inside: long tasks
// (PerformanceObserver "longtask": main-thread tasks over 50 ms, during
// which the page answers no input) and long animation frames (frames that
// took over 50 ms to present, with how long the page's scripts ran in
// them: is it the page's code or the machine?); for every snapshot the
// page renders,
// the time from the service taking it (its "at") to the next frame after
// the page's handler ran (this listener runs after the page's, added
// earlier); and for snapshots and tail batches, the time from the message's
// arrival to the end of the page's handler. __measure.reset() starts a new
// period.
const measureScript = `(() => {
	const fresh = () => ({longTasks: [], frames: [], scripts: [], onScreen: [], snapshotHandled: [], tailHandled: [], maxIn: 0});
	window.__measure = fresh();
	window.__measure.reset = () => { const r = fresh(); r.reset = window.__measure.reset; window.__measure = r; };
	new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__measure.longTasks.push(e.duration); })
		.observe({type: "longtask"});
	if (PerformanceObserver.supportedEntryTypes.includes("long-animation-frame")) {
		new PerformanceObserver((l) => {
			for (const e of l.getEntries()) {
				window.__measure.frames.push(e.duration);
				window.__measure.scripts.push(e.scripts.reduce((s, x) => s + x.duration, 0));
			}
		}).observe({type: "long-animation-frame"});
	}
	source.addEventListener("snapshot", (e) => {
		const m = window.__measure;
		m.snapshotHandled.push(performance.now() - e.timeStamp);
		const v = JSON.parse(e.data);
		m.maxIn = Math.max(m.maxIn, v.totals.In);
		requestAnimationFrame(() => m.onScreen.push(Date.now() - v.at));
	});
	source.addEventListener("tail", (e) => window.__measure.tailHandled.push(performance.now() - e.timeStamp));
	return true;
})()`

type pageMeasure struct {
	LongTasks       []float64 `json:"longTasks"`
	Frames          []float64 `json:"frames"`
	Scripts         []float64 `json:"scripts"`
	OnScreen        []float64 `json:"onScreen"`
	SnapshotHandled []float64 `json:"snapshotHandled"`
	TailHandled     []float64 `json:"tailHandled"`
	MaxIn           float64   `json:"maxIn"`
}

// TestBrowserUnderLoad measures how the page keeps up while the bus is as
// busy as this machine can make it (senders posting as fast as they can,
// bounded to loadFor and loadEvents per sender), against the same time
// with the bus quiet: the events/s reached, the page's long tasks, the
// time from the service taking a snapshot to its frame on screen, and how
// long messages wait and take to be handled. It logs the figures (they
// depend on the machine; docs/dashboard.md has a run's) and asserts only
// that the page kept rendering snapshots under the load.
func TestBrowserUnderLoad(t *testing.T) {
	exe := chromium(t)
	const (
		senders    = 4
		loadFor    = 5 * time.Second
		loadEvents = 2_000_000
	)
	srv, _, base := start(t, Options{Machines: true, Interval: time.Second})
	bctx := browser(t, exe)
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/dashboard/"),
		chromedp.WaitVisible(chromedp.CSS(`#summary`))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.body.dataset.snapshots >= 1`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("no first snapshot: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](measureScript)); err != nil {
		t.Fatal(err)
	}
	measure := func(what string, load bool) pageMeasure {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__measure.reset(), true`)); err != nil {
			t.Fatal(err)
		}
		before := srv.Stats().EventsDelivered
		start := time.Now()
		if load {
			flood(t, srv, senders, loadFor, loadEvents)
		} else {
			time.Sleep(loadFor) // a period to measure, not a wait for a condition
		}
		elapsed := time.Since(start)
		delivered := srv.Stats().EventsDelivered - before
		raw, err := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify(window.__measure)`))
		if err != nil {
			t.Fatal(err)
		}
		var m pageMeasure
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d events in %v, %.0f events/s (the page showed at most %.0f events/s in)",
			what, delivered, elapsed.Round(time.Millisecond), float64(delivered)/elapsed.Seconds(), m.MaxIn)
		t.Logf("%s: long tasks: %d, %.0f ms in all, longest %.0f ms", what, len(m.LongTasks), sum(m.LongTasks), slices.Max(append(m.LongTasks, 0)))
		t.Logf("%s: long animation frames: %d, %.0f ms in all, longest %.0f ms; the page's scripts ran %.0f ms of them",
			what, len(m.Frames), sum(m.Frames), slices.Max(append(m.Frames, 0)), sum(m.Scripts))
		t.Logf("%s: snapshot taken -> on screen, ms: %s", what, quantiles(m.OnScreen))
		t.Logf("%s: snapshot arrived -> handled, ms: %s", what, quantiles(m.SnapshotHandled))
		t.Logf("%s: tail batch arrived -> handled, ms: %s", what, quantiles(m.TailHandled))
		return m
	}
	measure("quiet bus", false)
	if m := measure("busy bus", true); len(m.OnScreen) == 0 {
		t.Fatalf("the page rendered no snapshot in %v under load", loadFor)
	}
}

// flood runs n senders, each posting to its own receiver as fast as it
// can, until d has passed or each has posted max events.
func flood(t *testing.T, srv *server.Server, n int, d time.Duration, max int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	payload := make([]byte, 64)
	for i := range n {
		a, err := statebus.Dial(context.Background(), "load-"+string(rune('a'+i)), statebus.WithPipeName(srv.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		r, err := statebus.Dial(context.Background(), "sink-"+string(rune('a'+i)), statebus.WithPipeName(srv.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < max && ctx.Err() == nil; j++ {
				if a.PostEvent(ctx, r.ID(), "LOAD", payload) != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

// quantiles describes v: count, median, 90th percentile and max.
func quantiles(v []float64) string {
	if len(v) == 0 {
		return "none"
	}
	v = slices.Clone(v)
	slices.Sort(v)
	q := func(p float64) float64 { return v[int(p*float64(len(v)-1))] }
	b, _ := json.Marshal(map[string]any{"n": len(v), "p50": round1(q(0.5)), "p90": round1(q(0.9)), "max": round1(v[len(v)-1])})
	return string(b)
}

func round1(x float64) float64 { return float64(int(x*10+0.5)) / 10 }
