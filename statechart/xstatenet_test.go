package statechart_test

// XStateNet's own semantic cases, re-expressed as table tests.
//
// Each case names the C# test it comes from (in digitect38/XStateNet, test/ or
// XStateNet2/XStateNet2.Tests/), has its own script in XStateNet's dialect
// (relaxed JSON where the original uses it), registers its actions, guards
// and services, and then drives the machine step by step: an event, a clock
// advance, an event the machine gave itself (a service's done.invoke), or a
// custom check. After each step it compares the configuration (State() in
// XStateNet's "#id.a.b;#id.c" form), the actions run by that step in order,
// and context values.
//
// The default mode expects what SCXML does. Where XStateNet's engines do
// something else, the case says so in its note and, where the runtime's
// XStateNet compatibility mode covers it, a second case loads the script with
// WithCompat(XStateNet). The list of deviations is in docs/statecharts.md.
//
// Run: go test -run TestXStateNet -v ./statechart/

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

// xsnCase is one semantic case.
type xsnCase struct {
	name   string
	origin string // the C# test it re-expresses
	note   string // where XStateNet does otherwise
	script string
	compat bool           // load with WithCompat(XStateNet)
	ctx    map[string]any // WithContext; nil keeps the script's

	record   []string // action names registered as no-ops that only log
	actions  map[string]statechart.Action
	guards   map[string]statechart.Guard
	delays   map[string]statechart.Delay
	services func(r *xsnRun) map[string]statechart.Service

	start xsnStep // what Start must give (only the checks are used)
	steps []xsnStep
}

// xsnStep is one step and what it must give.
type xsnStep struct {
	send    string        // an external event
	data    any           // its data
	advance time.Duration // advance the manual clock
	await   string        // deliver the next event the machine gave itself whose name starts with this
	do      func(t *testing.T, r *xsnRun)

	state   string         // Machine.State(); "" is not checked
	log     []string       // the actions the step ran, in order; nil is not checked (use none)
	ctx     map[string]any // context values, compared as JSON
	done    bool           // the machine must have reached a top-level final state
	changed *bool          // Result.Changed of the send
	err     error          // errors.Is of the send's error
}

// none is an empty action log: the step must run no action.
var none = []string{}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// xsnRun is one run of a case.
type xsnRun struct {
	t     *testing.T
	m     *statechart.Machine
	clock *statechart.ManualClock

	mu        sync.Mutex
	log       []string
	posted    []statechart.Event // events the machine gave itself, not yet delivered
	postedCh  chan struct{}      // signalled on each post
	delivered []string           // names delivered by drain since the last await

	gates map[string]chan struct{} // for services that wait for the test
	calls *atomic.Int32            // how often a counted service ran
}

func (r *xsnRun) record(name string) {
	r.mu.Lock()
	r.log = append(r.log, name)
	r.mu.Unlock()
}

func (r *xsnRun) takeLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.log
	r.log = nil
	if l == nil {
		l = []string{}
	}
	return l
}

// gate returns the channel a service named name waits on; release closes it.
func (r *xsnRun) gate(name string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gates == nil {
		r.gates = map[string]chan struct{}{}
	}
	c, ok := r.gates[name]
	if !ok {
		c = make(chan struct{})
		r.gates[name] = c
	}
	return c
}

func (r *xsnRun) release(name string) { close(r.gate(name)) }

func (r *xsnRun) post(ev statechart.Event) {
	r.mu.Lock()
	r.posted = append(r.posted, ev)
	r.mu.Unlock()
	select {
	case r.postedCh <- struct{}{}:
	default:
	}
}

func (r *xsnRun) next() (statechart.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.posted) == 0 {
		return statechart.Event{}, false
	}
	ev := r.posted[0]
	r.posted = r.posted[1:]
	return ev, true
}

// drain delivers the events the machine gave itself so far (timers fire
// synchronously in ManualClock.Advance, so theirs are all here).
func (r *xsnRun) drain() {
	r.t.Helper()
	for i := 0; ; i++ {
		if i > 1000 {
			r.t.Fatal("the machine keeps giving itself events: more than 1000 in one step")
		}
		ev, ok := r.next()
		if !ok {
			return
		}
		r.delivered = append(r.delivered, ev.Name)
		if _, err := r.m.Send(ev); err != nil && !errors.Is(err, statechart.ErrStopped) && !errors.Is(err, statechart.ErrDone) {
			r.t.Fatalf("delivering %s: %v", ev.Name, err)
		}
	}
}

// await delivers events until one whose name starts with prefix has been
// delivered, waiting up to 10 s for the machine to give itself one.
func (r *xsnRun) await(prefix string) {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for i, name := range r.delivered {
			if strings.HasPrefix(name, prefix) {
				r.delivered = r.delivered[i+1:]
				return
			}
		}
		r.drain()
		if r.seen(prefix) {
			continue
		}
		select {
		case <-r.postedCh:
		case <-deadline:
			r.t.Fatalf("no event %s* within 10 s (delivered: %v)", prefix, r.delivered)
		}
	}
}

func (r *xsnRun) seen(prefix string) bool {
	for _, name := range r.delivered {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// xsnNum reads a context number the way the runtime stores them (float64
// from JSON) or the way a Go action may have (int).
func xsnNum(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case json.Number:
		f, _ := n.Float64()
		return f
	}
	return 0
}

// Actions and guards the cases share.

func xsnAdd(key string, d float64) statechart.Action {
	return func(s *statechart.Scope) error {
		s.Context[key] = xsnNum(s.Context[key]) + d
		return nil
	}
}

func xsnSet(key string, v any) statechart.Action {
	return func(s *statechart.Scope) error {
		s.Context[key] = v
		return nil
	}
}

// xsnSaveData stores the event's data, decoded, under key.
func xsnSaveData(key string) statechart.Action {
	return func(s *statechart.Scope) error {
		var v any
		if len(s.Event.Data) > 0 {
			if err := json.Unmarshal(s.Event.Data, &v); err != nil {
				return err
			}
		}
		s.Context[key] = v
		return nil
	}
}

func xsnAbove(key string, n float64) statechart.Guard {
	return func(s *statechart.Scope) bool { return xsnNum(s.Context[key]) > n }
}

func xsnAtMost(key string, n float64) statechart.Guard {
	return func(s *statechart.Scope) bool { return xsnNum(s.Context[key]) <= n }
}

func xsnIs(key string, v any) statechart.Guard {
	return func(s *statechart.Scope) bool { return reflect.DeepEqual(s.Context[key], v) }
}

func xsnConst(b bool) statechart.Guard { return func(*statechart.Scope) bool { return b } }

// xsnStart is when every case's manual clock starts.
var xsnStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// runXSN runs the cases of one group, each as a subtest.
func runXSN(t *testing.T, cases []xsnCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.origin == "" {
				t.Fatal("case without origin")
			}
			r := &xsnRun{t: t, clock: statechart.NewManualClock(xsnStart), postedCh: make(chan struct{}, 1)}
			impl := statechart.Implementations{
				Actions:  map[string]statechart.Action{},
				Guards:   c.guards,
				Delays:   c.delays,
				Services: map[string]statechart.Service{},
			}
			for _, name := range c.record {
				name := name
				impl.Actions[name] = func(*statechart.Scope) error { r.record(name); return nil }
			}
			for name, a := range c.actions {
				name, a := name, a
				impl.Actions[name] = func(s *statechart.Scope) error { r.record(name); return a(s) }
			}
			if c.services != nil {
				impl.Services = c.services(r)
			}
			var lopts []statechart.LoadOption
			if c.compat {
				lopts = append(lopts, statechart.WithCompat(statechart.XStateNet))
			}
			def, err := statechart.Load([]byte(c.script), impl, lopts...)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			opts := []statechart.Option{statechart.WithClock(r.clock), statechart.WithEventQueue(r.post)}
			if c.ctx != nil {
				opts = append(opts, statechart.WithContext(maps.Clone(c.ctx))) // the machine owns (and changes) it
			}
			r.m = def.New(opts...)
			t.Cleanup(r.m.Stop)
			if err := r.m.Start(); err != nil {
				t.Fatalf("Start: %v", err)
			}
			r.drain()
			r.check("start", c.start, statechart.Result{}, nil)
			for i, st := range c.steps {
				r.step(fmt.Sprintf("step %d", i+1), st)
			}
		})
	}
}

func (r *xsnRun) step(label string, st xsnStep) {
	r.t.Helper()
	var res statechart.Result
	var err error
	switch {
	case st.send != "":
		label += " (" + st.send + ")"
		ev := statechart.Event{Name: st.send, Origin: "test"}
		if st.data != nil {
			ev.Data, _ = json.Marshal(st.data)
		}
		res, err = r.m.Send(ev)
		if st.err == nil && err != nil {
			r.t.Fatalf("%s: Send: %v", label, err)
		}
	case st.advance > 0:
		label += fmt.Sprintf(" (advance %v)", st.advance)
		r.clock.Advance(st.advance)
	case st.await != "":
		label += " (await " + st.await + ")"
	}
	if st.do != nil {
		st.do(r.t, r)
	}
	if st.await != "" {
		r.await(st.await)
	}
	r.drain()
	r.check(label, st, res, err)
}

func (r *xsnRun) check(label string, st xsnStep, res statechart.Result, err error) {
	r.t.Helper()
	if st.err != nil && !errors.Is(err, st.err) {
		r.t.Errorf("%s: error %v, want %v", label, err, st.err)
	}
	if st.state != "" {
		if got := r.m.State(); got != st.state {
			r.t.Errorf("%s: state\n got %s\nwant %s", label, got, st.state)
		}
	}
	log := r.takeLog()
	if st.log != nil && !reflect.DeepEqual(log, st.log) {
		r.t.Errorf("%s: actions\n got %q\nwant %q", label, log, st.log)
	}
	if len(st.ctx) > 0 {
		got := r.m.Context()
		for k, want := range st.ctx {
			gj, _ := json.Marshal(got[k])
			wj, _ := json.Marshal(want)
			if string(gj) != string(wj) {
				r.t.Errorf("%s: context %s = %s, want %s", label, k, gj, wj)
			}
		}
	}
	if st.done && !r.m.Done() {
		r.t.Errorf("%s: the machine is not done (state %s)", label, r.m.State())
	}
	if st.changed != nil && res.Changed != *st.changed {
		r.t.Errorf("%s: Result.Changed = %v, want %v", label, res.Changed, *st.changed)
	}
}

// xsnWaitService is a service that waits for the test to release it (or for
// its state to exit), then returns result or fails with err.
func xsnWaitService(r *xsnRun, name string, result any, err error) statechart.Service {
	g := r.gate(name)
	return func(ctx context.Context, _ *statechart.Scope) (any, error) {
		select {
		case <-g:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return result, err
	}
}
