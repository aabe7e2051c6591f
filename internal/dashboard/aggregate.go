package dashboard

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
)

// stuckAfter is how long a writer blocked in one write makes its
// connection a stuck target (the service's fan-out passes it over then).
const stuckAfter = 500 * time.Millisecond

// snapshot is one published state of the bus, as the page receives it.
type snapshot struct {
	taken time.Time
	data  []byte        // JSON of view
	next  chan struct{} // closed when a newer snapshot replaces this one
}

// view is the JSON the page renders.
type view struct {
	At       int64              `json:"at"` // Unix milliseconds
	Visible  bool               `json:"visible"`
	Totals   totals             `json:"totals"`
	Refusals map[string]float64 `json:"refusals"` // per second, by reason
	Machines []machine          `json:"machines,omitempty"`
	Traffic  []pair             `json:"traffic,omitempty"`
	Stuck    []string           `json:"stuck,omitempty"`
	Slowest  []machine          `json:"slowest,omitempty"`
}

type totals struct {
	In, Out               float64 // events per second received, delivered
	Connections, Machines int
	QueuedBytes           int
	PendingRequests       int
	Refused               float64 // per second, all reasons
	SlowConsumersClosed   uint64
	WatchDropped          uint64
	SampleEvery           uint32 // the traffic view's sampling period
	UptimeSeconds         float64
	Version               string
}

type machine struct {
	ID          string  `json:"id"`
	Process     string  `json:"process,omitempty"`
	ProcessID   int64   `json:"processId,omitempty"`
	PID         int     `json:"pid"`
	UID         int     `json:"uid"`
	Cert        string  `json:"cert,omitempty"`
	Addr        string  `json:"addr,omitempty"`
	Daemon      string  `json:"daemon,omitempty"`
	Host        string  `json:"host,omitempty"`
	Conn        uint64  `json:"conn"`
	Since       int64   `json:"since"` // connected at, Unix milliseconds
	State       string  `json:"state,omitempty"`
	In          float64 `json:"in"`  // events per second its connection sent
	Out         float64 `json:"out"` // events per second written to it
	QueuedBytes int     `json:"queued"`
	BlockedMs   int64   `json:"blockedMs"`
	Slow        string  `json:"slow"` // "", "backlog" or "stuck"
}

type pair struct {
	From string  `json:"from"`
	To   string  `json:"to"`
	Rate float64 `json:"rate"` // events per second, estimated from samples
}

// aggregator runs while pages are open: it owns the tap and turns
// counters and samples into snapshots.
type aggregator struct {
	d    *Dashboard
	tap  *server.Tap
	quit chan struct{}
	once sync.Once

	mu    sync.Mutex // pairs, written by senders' readers through the tap
	pairs map[string]map[string]uint64
	other uint64 // samples past maxPairs
	npair int
}

func newAggregator(d *Dashboard) *aggregator {
	a := &aggregator{d: d, quit: make(chan struct{}), pairs: map[string]map[string]uint64{}}
	a.tap = &server.Tap{Tail: router.NewWatches[server.TailSink]()}
	if d.opt.Machines {
		a.tap.Sample = a.sample
	}
	a.tap.SetEvery(1)
	return a
}

func (a *aggregator) stop() { a.once.Do(func() { close(a.quit) }) }

// sample counts one sampled event; it runs on a sender's reader.
func (a *aggregator) sample(name, source, target []byte, weight uint32) {
	a.mu.Lock()
	to := a.pairs[string(source)]
	if to == nil && a.npair < maxPairs {
		to = map[string]uint64{}
		a.pairs[string(source)] = to
	}
	if _, ok := to[string(target)]; ok || (to != nil && a.npair < maxPairs) {
		if !ok {
			a.npair++
		}
		to[string(target)] += uint64(weight)
	} else {
		a.other += uint64(weight)
	}
	a.mu.Unlock()
}

// run takes a snapshot at once and then every interval until stopped.
func (a *aggregator) run() {
	a.d.srv.SetTap(a.tap)
	defer a.d.srv.RemoveTap(a.tap)
	prev := a.measure(nil, time.Now())
	a.d.publish(prev.snapshot(a.d, nil, 0))
	t := time.NewTicker(a.d.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-a.quit:
			return
		case now := <-t.C:
			cur := a.measure(prev, now)
			a.d.publish(cur.snapshot(a.d, prev, now.Sub(prev.at).Seconds()))
			prev = cur
		}
	}
}

// reading is the counters at one instant.
type reading struct {
	at    time.Time
	stats server.Stats
	conns map[uint64]server.ConnStat
	pairs map[string]map[string]uint64
	other uint64
	every uint32
}

func (a *aggregator) measure(prev *reading, now time.Time) *reading {
	r := &reading{at: now, stats: a.d.srv.Stats(), conns: map[uint64]server.ConnStat{}, every: a.tap.Every()}
	for _, c := range a.d.srv.ConnStats() {
		r.conns[c.ID] = c
	}
	a.mu.Lock()
	r.pairs, r.other = a.pairs, a.other
	a.pairs, a.other, a.npair = map[string]map[string]uint64{}, 0, 0
	a.mu.Unlock()
	if prev != nil {
		// Sample about SampleTarget events a second whatever the rate.
		secs := now.Sub(prev.at).Seconds()
		if secs > 0 {
			rate := float64(r.stats.EventsReceived-prev.stats.EventsReceived) / secs
			a.tap.SetEvery(uint32(min(rate/SampleTarget, 1<<20)))
		}
	}
	return r
}

func rate(cur, prev uint64, secs float64) float64 {
	if secs <= 0 || cur < prev {
		return 0
	}
	return float64(cur-prev) / secs
}

// snapshot turns r (and the reading before it) into the page's view.
func (r *reading) snapshot(d *Dashboard, prev *reading, secs float64) *snapshot {
	st := d.srv.Status()
	v := view{At: r.at.UnixMilli(), Visible: d.opt.Machines, Refusals: map[string]float64{}}
	v.Totals = totals{Connections: st.ConnectionCount, Machines: st.RegisteredMachines,
		QueuedBytes: r.stats.QueuedBytes, SlowConsumersClosed: r.stats.SlowConsumersClosed,
		WatchDropped: r.stats.WatchDropped, SampleEvery: r.every, UptimeSeconds: st.UptimeSeconds,
		Version: st.Version, PendingRequests: r.stats.PendingRequests}
	if prev != nil {
		v.Totals.In = rate(r.stats.EventsReceived, prev.stats.EventsReceived, secs)
		v.Totals.Out = rate(r.stats.EventsDelivered, prev.stats.EventsDelivered, secs)
		for reason, n := range r.stats.Refused {
			x := rate(n, prev.stats.Refused[reason], secs)
			v.Refusals[reason] = x
			v.Totals.Refused += x
		}
	}
	if d.opt.Machines {
		r.machines(d, prev, secs, &v)
	}
	data, _ := json.Marshal(v)
	return &snapshot{taken: r.at, data: data}
}

func (r *reading) machines(d *Dashboard, prev *reading, secs float64, v *view) {
	for _, m := range d.srv.MachineInfos() {
		x := machine{ID: m.MachineID, Process: m.ProcessName, ProcessID: m.ProcessID, PID: m.PeerPID, UID: m.PeerUID,
			Cert: m.PeerCert, Addr: m.PeerAddress, Daemon: m.Daemon, Host: m.Host, Conn: m.ConnectionID,
			Since: m.ConnectedAt.UnixMilli(), State: m.State}
		if c, ok := r.conns[m.ConnectionID]; ok && m.Daemon == "" {
			x.QueuedBytes, x.BlockedMs = c.QueuedBytes, c.Blocked.Milliseconds()
			if prev != nil {
				if p, ok := prev.conns[m.ConnectionID]; ok {
					x.In, x.Out = rate(c.Received, p.Received, secs), rate(c.Delivered, p.Delivered, secs)
				}
			}
			switch {
			case c.Blocked >= stuckAfter:
				x.Slow = "stuck"
				v.Stuck = append(v.Stuck, x.ID)
			case c.QueuedBytes > 0:
				x.Slow = "backlog"
			}
		}
		v.Machines = append(v.Machines, x)
	}
	slices.SortFunc(v.Machines, func(a, b machine) int { return cmp.Compare(a.ID, b.ID) })
	slow := slices.Clone(v.Machines)
	slow = slices.DeleteFunc(slow, func(m machine) bool { return m.QueuedBytes == 0 && m.BlockedMs == 0 })
	slices.SortFunc(slow, func(a, b machine) int {
		return cmp.Or(cmp.Compare(b.BlockedMs, a.BlockedMs), cmp.Compare(b.QueuedBytes, a.QueuedBytes))
	})
	v.Slowest = slow[:min(len(slow), 5)]
	if secs > 0 {
		for from, tos := range r.pairs {
			for to, n := range tos {
				v.Traffic = append(v.Traffic, pair{From: from, To: to, Rate: float64(n) / secs})
			}
		}
		if r.other > 0 {
			v.Traffic = append(v.Traffic, pair{From: "(other)", To: "(other)", Rate: float64(r.other) / secs})
		}
		slices.SortFunc(v.Traffic, func(a, b pair) int { return cmp.Compare(b.Rate, a.Rate) })
		v.Traffic = v.Traffic[:min(len(v.Traffic), 50)]
	}
}
