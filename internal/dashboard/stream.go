package dashboard

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/internal/router"
)

// writeTimeout bounds one write to a page: a page that stops reading is
// dropped instead of holding its stream.
const writeTimeout = 10 * time.Second

var nextTail atomic.Uint64

// tailSink collects the events one page's tail filter matches: at most
// TailBudget per TailInterval are kept, the others only counted.
type tailSink struct {
	id     uint64
	filter router.Filter

	budget  atomic.Int32  // events it may still keep this interval
	matched atomic.Uint64 // every match, kept or not
	mu      sync.Mutex
	events  []tailEvent
}

type tailEvent struct {
	At     int64  `json:"at"` // Unix milliseconds
	Name   string `json:"name"`
	Source string `json:"source"`
	Target string `json:"target"`
	Size   int    `json:"size"`
}

// Offer runs on a sender's reader goroutine for every matching event.
func (t *tailSink) Offer(name, source, target []byte, size int) {
	t.matched.Add(1)
	if t.budget.Load() <= 0 || t.budget.Add(-1) < 0 {
		return
	}
	e := tailEvent{At: time.Now().UnixMilli(), Name: string(name), Source: string(source), Target: string(target), Size: size}
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
}

// take returns the kept events and the count of matches since the last
// take, and opens the next interval's budget.
func (t *tailSink) take(buf []tailEvent) ([]tailEvent, uint64) {
	t.mu.Lock()
	buf = append(buf[:0], t.events...)
	clear(t.events)
	t.events = t.events[:0]
	t.mu.Unlock()
	t.budget.Store(TailBudget)
	return buf, t.matched.Swap(0)
}

type tailMessage struct {
	Events  []tailEvent `json:"events"`
	Matched uint64      `json:"matched"` // matches in the interval, sent or not
}

// stream serves one page's Server-Sent Events: "snapshot" once per
// interval and "tail" every TailInterval with something to say.
func (d *Dashboard) stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := router.Filter{EventName: q.Get("name"), Source: q.Get("source"), Target: q.Get("target")}
	if max(len(f.EventName), len(f.Source), len(f.Target)) > MaxPatternBytes {
		http.Error(w, "a filter pattern is at most 256 bytes", http.StatusBadRequest)
		return
	}
	var tail *tailSink
	if q.Get("tail") != "off" {
		tail = &tailSink{id: nextTail.Add(1), filter: f}
		tail.budget.Store(TailBudget)
	}
	if err := d.open(tail); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer d.close(tail)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, data []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write([]byte("event: " + event + "\ndata: ")); err != nil {
			return false
		}
		if _, err := w.Write(data); err != nil { // shared by every page: not appended to
			return false
		}
		if _, err := w.Write([]byte("\n\n")); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send("hello", []byte(`{"machines":`+boolJSON(d.opt.Machines)+`}`)) {
		return
	}

	snap := d.latest()
	if time.Since(snap.taken) < 2*d.opt.Interval && snap.data != nil {
		if !send("snapshot", snap.data) {
			return
		}
	}
	ticker := time.NewTicker(TailInterval)
	defer ticker.Stop()
	var buf []tailEvent
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.done:
			return
		case <-snap.next:
			snap = d.latest()
			if !send("snapshot", snap.data) {
				return
			}
		case <-ticker.C:
			if tail == nil || !d.opt.Machines {
				continue
			}
			var matched uint64
			buf, matched = tail.take(buf)
			if matched == 0 {
				continue
			}
			data, _ := json.Marshal(tailMessage{Events: buf, Matched: matched})
			if !send("tail", data) {
				return
			}
		}
	}
}

func boolJSON(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
