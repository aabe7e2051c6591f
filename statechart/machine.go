package statechart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Errors Send returns when a machine cannot take an event.
var (
	ErrNotStarted = errors.New("statechart: the machine is not started: call Start first")
	ErrStopped    = errors.New("statechart: the machine is stopped: it takes no more events")
	ErrDone       = errors.New("statechart: the machine reached its final state: it takes no more events")
)

// Option changes a Machine made by Definition.New or Restore.
type Option func(*Machine)

// WithClock replaces the clock that after transitions and delayed sends use.
func WithClock(c Clock) Option { return func(m *Machine) { m.clock = c } }

// WithDispatcher installs where the machine's sends go.
func WithDispatcher(d Dispatcher) Option { return func(m *Machine) { m.disp = d } }

// WithMachineID sets the machine's instance id (default: the script's id):
// the Origin of its sends, and the target of its self-sends.
func WithMachineID(id string) Option { return func(m *Machine) { m.id = id } }

// WithContext replaces the script's context with ctx, which the machine then
// owns.
func WithContext(ctx map[string]any) Option { return func(m *Machine) { m.ctx = ctx } }

// WithEventQueue sets where the events a machine gives itself go: its after
// timers, its services' done and error events, and its self-sends. By default
// timer and service events are processed by Send in the goroutine that
// produced them, and self-sends are processed before the Send that queued them
// returns. An orchestrator passes its mailbox, so that every event reaches the
// machine in one queue.
func WithEventQueue(post func(Event)) Option { return func(m *Machine) { m.post = post } }

type status uint8

const (
	created status = iota
	running
	done
	stopped
)

// Machine is a running instance of a Definition. Its methods are safe for
// concurrent use: events are processed one macrostep at a time.
type Machine struct {
	def   *Definition
	id    string
	clock Clock
	disp  Dispatcher
	post  func(Event)

	mu     sync.Mutex
	status status
	ctx    map[string]any
	active bitset
	hist   [][]*state // by history state idx: the recorded states
	subs   []*subscriber
	stateS string // State()'s cached answer
	stale  bool   // the configuration changed since stateS

	// timers and services of active states, by token; the events they post
	// carry the token, and a token that is gone marks an event as stale.
	nextTok uint64
	live    map[uint64]liveItem
	owned   [][]uint64 // by state idx: its tokens

	// Scratch for one macrostep, kept to avoid allocating per event.
	scope     Scope
	enabled   []*transition
	cand      []*transition
	exitSet   bitset
	entrySet  bitset
	defEntry  bitset
	histDef   map[int]*transition
	internalQ []Event
	qHead     int
	outbox    []Outgoing
	selfQ     []Event
	toInvoke  []*state
	err       error
	reachDone bool
}

type liveItem struct {
	timer  Timer
	cancel context.CancelFunc
}

type subscriber struct{ f func(Step) }

// New makes a machine; Start enters its initial configuration.
func (d *Definition) New(opts ...Option) *Machine {
	n := len(d.states)
	m := &Machine{
		def:      d,
		id:       d.scriptID,
		clock:    RealClock(),
		active:   newBitset(n),
		exitSet:  newBitset(n),
		entrySet: newBitset(n),
		defEntry: newBitset(n),
		hist:     make([][]*state, n),
		owned:    make([][]uint64, n),
		stale:    true,
	}
	for _, o := range opts {
		o(m)
	}
	if m.ctx == nil {
		if d.context != nil && d.context.kind == kObject {
			m.ctx = d.context.toAny().(map[string]any)
		} else {
			m.ctx = map[string]any{}
		}
	}
	m.scope.Machine = m
	m.scope.m = m
	m.scope.Context = m.ctx
	return m
}

// ID returns the machine's instance id.
func (m *Machine) ID() string { return m.id }

// Definition returns the script the machine runs.
func (m *Machine) Definition() *Definition { return m.def }

// Start enters the initial configuration, running entry actions and any
// eventless transitions, as one macrostep.
func (m *Machine) Start() error {
	m.mu.Lock()
	if m.status != created {
		m.mu.Unlock()
		return fmt.Errorf("statechart: machine %s is already started", m.id)
	}
	m.status = running
	m.err = nil
	from := ""
	m.scope.Event = Event{Name: "xstate.init"}
	m.entrySet.clear()
	m.defEntry.clear()
	m.addDescendants(m.def.root())
	m.enterStates(nil)
	m.settle()
	m.finishMacrostep()
	out, self := m.takeQueues()
	m.runSelfSends(&out)
	err := m.err
	if len(m.subs) > 0 {
		m.notify(Step{Event: m.scope.Event, From: from, To: m.stateLocked()})
	}
	m.mu.Unlock()
	m.dispatch(out, self)
	return err
}

// Send processes ev as one macrostep and returns what it did. An error from
// an action is returned (the machine goes on, as SCXML's error.execution
// does); ErrNotStarted, ErrStopped and ErrDone mean the event was not
// processed.
func (m *Machine) Send(ev Event) (Result, error) {
	m.mu.Lock()
	switch m.status {
	case created:
		m.mu.Unlock()
		return Result{}, ErrNotStarted
	case stopped:
		m.mu.Unlock()
		return Result{}, ErrStopped
	case done:
		m.mu.Unlock()
		return Result{Done: true}, ErrDone
	}
	if ev.tok != 0 {
		if _, ok := m.live[ev.tok]; !ok {
			m.mu.Unlock()
			return Result{}, nil // a timer or service of a state that has exited
		}
		if ev.oneShot {
			delete(m.live, ev.tok)
		}
	}
	var from string
	if len(m.subs) > 0 {
		from = m.stateLocked()
	}
	m.err = nil
	res := Result{Changed: m.macrostep(ev)}
	out, self := m.takeQueues()
	if m.runSelfSends(&out) {
		res.Changed = true
	}
	res.Done = m.status == done
	err := m.err
	if res.Changed && len(m.subs) > 0 {
		m.notify(Step{Event: ev, From: from, To: m.stateLocked()})
	}
	m.mu.Unlock()
	if len(out) > 0 || len(self) > 0 {
		if derr := m.dispatch(out, self); derr != nil && err == nil {
			err = derr
		}
	}
	return res, err
}

// Stop cancels the machine's timers and services; later Sends return
// ErrStopped. The configuration stays as it was, for State and Snapshot.
func (m *Machine) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status == stopped {
		return
	}
	m.status = stopped
	m.cancelAll()
}

func (m *Machine) cancelAll() {
	for tok, it := range m.live {
		it.stop()
		delete(m.live, tok)
	}
	for i := range m.owned {
		m.owned[i] = m.owned[i][:0]
	}
}

func (it liveItem) stop() {
	if it.timer != nil {
		it.timer.Stop()
	}
	if it.cancel != nil {
		it.cancel()
	}
}

// Done reports whether the machine reached a top-level final state.
func (m *Machine) Done() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status == done
}

// State returns the active leaf states in XStateNet's form,
// "#id.a.b;#id.c", in document order.
func (m *Machine) State() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stateLocked()
}

func (m *Machine) stateLocked() string {
	if !m.stale {
		return m.stateS
	}
	var one *state // the common case, one leaf: its string, without building one
	n := 0
	m.eachLeaf(func(s *state) { one = s; n++ })
	if n == 1 {
		m.stateS, m.stale = one.full, false
		return m.stateS
	}
	var b strings.Builder
	m.eachLeaf(func(s *state) {
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(s.full)
	})
	m.stateS, m.stale = b.String(), false
	return m.stateS
}

func (m *Machine) eachLeaf(f func(*state)) {
	for i := m.active.next(0); i >= 0; i = m.active.next(i + 1) {
		if s := m.def.states[i]; s.isAtomic() && s.parent != nil {
			f(s)
		}
	}
}

// Leaves returns the active atomic states as paths from the root, in
// document order.
func (m *Machine) Leaves() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	m.eachLeaf(func(s *state) { out = append(out, s.path) })
	return out
}

// LeafIDs returns the active atomic states by id (the state's explicit id,
// else "<script id>.<path>").
func (m *Machine) LeafIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	m.eachLeaf(func(s *state) { out = append(out, s.id) })
	return out
}

// Matches reports whether a state is active: "a.b" (a path from the root),
// "#id" or "#id.path".
func (m *Machine) Matches(state string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.in(state)
}

func (m *Machine) in(ref string) bool {
	s := m.def.lookup(ref)
	return s != nil && m.active.has(s.idx)
}

// Context returns a deep copy of the machine's context.
func (m *Machine) Context() map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return deepCopy(m.ctx).(map[string]any)
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[k] = deepCopy(e)
		}
		return c
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = deepCopy(e)
		}
		return c
	}
	return v
}

// Subscribe calls f after each Start and each Send that took a transition.
// f runs with the machine's lock held, in order: it must not call the
// machine's methods.
func (m *Machine) Subscribe(f func(Step)) (cancel func()) {
	s := &subscriber{f: f}
	m.mu.Lock()
	m.subs = append(m.subs, s)
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for i, x := range m.subs {
			if x == s {
				m.subs = append(m.subs[:i:i], m.subs[i+1:]...)
				return
			}
		}
	}
}

func (m *Machine) notify(st Step) {
	for _, s := range m.subs {
		s.f(st)
	}
}

// macrostep processes one external event to completion and reports whether
// any transition was taken.
func (m *Machine) macrostep(ev Event) bool {
	m.scope.Event = ev
	m.selectTransitions(ev.Name)
	changed := false
	if len(m.enabled) > 0 {
		m.microstep()
		changed = true
	}
	if m.settle() {
		changed = true
	}
	m.finishMacrostep()
	return changed
}

// settle takes eventless transitions and internal events until neither is
// left (SCXML's inner loop).
func (m *Machine) settle() bool {
	changed := false
	for n := 0; m.status == running; n++ {
		if n == maxMicrosteps {
			m.fail(fmt.Errorf("statechart: machine %s took %d microsteps in one macrostep without settling: check always transitions and raised events for a loop", m.id, maxMicrosteps))
			m.internalQ, m.qHead = m.internalQ[:0], 0
			return changed
		}
		m.selectEventless()
		if len(m.enabled) == 0 {
			if m.qHead == len(m.internalQ) {
				m.internalQ, m.qHead = m.internalQ[:0], 0
				return changed
			}
			ev := m.internalQ[m.qHead]
			m.internalQ[m.qHead] = Event{}
			m.qHead++
			m.scope.Event = ev
			m.selectTransitions(ev.Name)
			if len(m.enabled) == 0 {
				continue
			}
		}
		m.microstep()
		changed = true
	}
	return changed
}

// finishMacrostep starts the services of states entered during the
// macrostep and still active, as SCXML does, and stops a finished machine.
func (m *Machine) finishMacrostep() {
	if m.reachDone {
		m.reachDone = false
		m.status = done
		m.cancelAll()
		m.toInvoke = m.toInvoke[:0]
		return
	}
	if len(m.toInvoke) == 0 {
		return
	}
	for _, s := range m.toInvoke {
		if m.active.has(s.idx) && m.status == running {
			for _, inv := range s.invokes {
				m.startService(s, inv)
			}
		}
	}
	m.toInvoke = m.toInvoke[:0]
}

func (m *Machine) fail(err error) {
	if m.err == nil {
		m.err = err
	}
}

// selectTransitions fills m.enabled with the transitions an event enables,
// in document order of the active atomic states, conflicts removed.
func (m *Machine) selectTransitions(name string) {
	m.enabled = m.enabled[:0]
	for i := m.active.next(0); i >= 0; i = m.active.next(i + 1) {
		s := m.def.states[i]
		if !s.isAtomic() {
			continue
		}
	anc:
		for st := s; st != nil; st = st.parent {
			for _, t := range m.candidates(st, name) {
				if m.guardOK(t) {
					m.addEnabled(t)
					break anc
				}
			}
		}
	}
	if len(m.enabled) > 1 {
		m.removeConflicts()
	}
}

// candidates returns st's transitions for the event, document order.
func (m *Machine) candidates(st *state, name string) []*transition {
	exact := st.on[name]
	if len(st.wild) == 0 {
		return exact
	}
	m.cand = m.cand[:0]
	i := 0
	for _, w := range st.wild {
		if !w.matches(name) {
			continue
		}
		for i < len(exact) && exact[i].order < w.order {
			m.cand = append(m.cand, exact[i])
			i++
		}
		m.cand = append(m.cand, w)
	}
	m.cand = append(m.cand, exact[i:]...)
	return m.cand
}

func (m *Machine) selectEventless() {
	m.enabled = m.enabled[:0]
	for i := m.active.next(0); i >= 0; i = m.active.next(i + 1) {
		s := m.def.states[i]
		if !s.alwaysChain || !s.isAtomic() {
			continue
		}
	anc:
		for st := s; st != nil; st = st.parent {
			for _, t := range st.always {
				if m.guardOK(t) {
					m.addEnabled(t)
					break anc
				}
			}
		}
	}
	if len(m.enabled) > 1 {
		m.removeConflicts()
	}
}

func (m *Machine) addEnabled(t *transition) {
	for _, e := range m.enabled {
		if e == t {
			return
		}
	}
	m.enabled = append(m.enabled, t)
}

func (m *Machine) guardOK(t *transition) bool {
	if t.in != nil && !m.active.has(t.in.idx) {
		return false
	}
	return t.guard == nil || t.guard(&m.scope)
}

// removeConflicts is SCXML's removeConflictingTransitions: of two
// transitions whose exit sets intersect, the one whose source is a
// descendant of the other's wins, else the earlier one in document order.
func (m *Machine) removeConflicts() {
	filtered := m.enabled[:0:0]
	for _, t1 := range m.enabled {
		preempted := false
		var drop []*transition
		for _, t2 := range filtered {
			if m.exitSetsIntersect(t1, t2) {
				if t2.source.contains(t1.source) {
					drop = append(drop, t2)
				} else {
					preempted = true
					break
				}
			}
		}
		if preempted {
			continue
		}
		if len(drop) > 0 {
			kept := filtered[:0]
			for _, t := range filtered {
				if !containsT(drop, t) {
					kept = append(kept, t)
				}
			}
			filtered = kept
		}
		filtered = append(filtered, t1)
	}
	m.enabled = append(m.enabled[:0], filtered...)
}

func containsT(ts []*transition, t *transition) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// exitRange returns the active states a transition exits: the active
// proper descendants of its domain ([lo, hi]); ok is false for a targetless
// transition.
func (m *Machine) exitRange(t *transition) (lo, hi int, ok bool) {
	d := m.domain(t)
	if d == nil {
		return 0, 0, false
	}
	return d.idx + 1, d.end, true
}

func (m *Machine) exitSetsIntersect(a, b *transition) bool {
	alo, ahi, aok := m.exitRange(a)
	blo, bhi, bok := m.exitRange(b)
	if !aok || !bok {
		return false
	}
	lo, hi := max(alo, blo), min(ahi, bhi)
	return m.active.anyIn(lo, hi)
}

// domain is SCXML's getTransitionDomain.
func (m *Machine) domain(t *transition) *state {
	if !t.hasHist {
		return t.domain
	}
	return staticDomain(t, m.effectiveTargets(t, nil))
}

func (m *Machine) effectiveTargets(t *transition, out []*state) []*state {
	for _, s := range t.targets {
		if s.kind != history {
			out = append(out, s)
			continue
		}
		if hv := m.hist[s.idx]; hv != nil {
			out = append(out, hv...)
		} else if s.initial != nil {
			out = m.effectiveTargets(s.initial, out)
		} else {
			out = m.effectiveTargets(s.parent.initial, out)
		}
	}
	return out
}

// microstep takes m.enabled: exit, transition actions, entry.
func (m *Machine) microstep() {
	m.exitStates()
	for _, t := range m.enabled {
		m.run(t.actions)
	}
	m.entrySet.clear()
	m.defEntry.clear()
	for k := range m.histDef {
		delete(m.histDef, k)
	}
	for _, t := range m.enabled {
		m.addTransitionEntry(t)
	}
	m.enterStates(m.enabled)
}

func (m *Machine) exitStates() {
	m.exitSet.clear()
	any := false
	for _, t := range m.enabled {
		lo, hi, ok := m.exitRange(t)
		if !ok {
			continue
		}
		for i := m.active.nextIn(lo, hi); i >= 0; i = m.active.nextIn(i+1, hi) {
			m.exitSet.add(i)
			any = true
		}
	}
	if !any {
		return
	}
	// Record history before any state is exited.
	for i := m.exitSet.next(0); i >= 0; i = m.exitSet.next(i + 1) {
		s := m.def.states[i]
		for _, h := range s.histories {
			var rec []*state
			for j := m.active.nextIn(s.idx+1, s.end); j >= 0; j = m.active.nextIn(j+1, s.end) {
				c := m.def.states[j]
				if h.deep && c.isAtomic() || !h.deep && c.parent == s {
					rec = append(rec, c)
				}
			}
			m.hist[h.idx] = rec
		}
	}
	for i := m.exitSet.prev(len(m.exitSet)*64 - 1); i >= 0; i = m.exitSet.prev(i - 1) {
		s := m.def.states[i]
		m.run(s.exit)
		m.release(s)
		m.active.remove(i)
	}
	m.stale = true
}

// release stops the timers and services a state owns.
func (m *Machine) release(s *state) {
	for _, tok := range m.owned[s.idx] {
		if it, ok := m.live[tok]; ok {
			it.stop()
			delete(m.live, tok)
		}
	}
	m.owned[s.idx] = m.owned[s.idx][:0]
}

// addTransitionEntry is the body of SCXML's computeEntrySet for one
// transition.
func (m *Machine) addTransitionEntry(t *transition) {
	if len(t.targets) == 0 {
		return
	}
	for _, s := range t.targets {
		m.addDescendants(s)
	}
	d := m.domain(t)
	if !t.hasHist {
		for _, s := range t.targets {
			m.addAncestors(s, d)
		}
		return
	}
	for _, s := range m.effectiveTargets(t, nil) {
		m.addAncestors(s, d)
	}
}

// addDescendants is SCXML's addDescendantStatesToEnter.
func (m *Machine) addDescendants(s *state) {
	if s.kind == history {
		if hv := m.hist[s.idx]; hv != nil {
			for _, c := range hv {
				m.addDescendants(c)
			}
			for _, c := range hv {
				m.addAncestors(c, s.parent)
			}
			return
		}
		def := s.initial
		if def == nil {
			def = s.parent.initial
		}
		if def == nil {
			return
		}
		if s.initial != nil {
			if m.histDef == nil {
				m.histDef = map[int]*transition{}
			}
			m.histDef[s.parent.idx] = s.initial
		}
		for _, c := range def.targets {
			m.addDescendants(c)
		}
		for _, c := range m.effectiveTargets(def, nil) {
			m.addAncestors(c, s.parent)
		}
		return
	}
	m.entrySet.add(s.idx)
	switch s.kind {
	case compound:
		if m.def.compat == XStateNet {
			// XStateNet restores a recorded history on any entry of
			// its parent, not only through the history state.
			for _, h := range s.histories {
				if hv := m.hist[h.idx]; hv != nil {
					for _, c := range hv {
						m.addDescendants(c)
					}
					for _, c := range hv {
						m.addAncestors(c, s)
					}
					return
				}
			}
		}
		m.defEntry.add(s.idx)
		for _, c := range s.initial.targets {
			m.addDescendants(c)
		}
		for _, c := range m.effectiveTargets(s.initial, nil) {
			m.addAncestors(c, s)
		}
	case parallel:
		for _, c := range s.children {
			if c.kind != history && !m.entrySet.anyIn(c.idx+1, c.end) {
				m.addDescendants(c)
			}
		}
	}
}

// addAncestors is SCXML's addAncestorStatesToEnter: the proper ancestors
// of s below stop.
func (m *Machine) addAncestors(s, stop *state) {
	for a := s.parent; a != nil && a != stop; a = a.parent {
		m.entrySet.add(a.idx)
		if a.kind == parallel {
			for _, c := range a.children {
				if c.kind != history && !m.entrySet.anyIn(c.idx+1, c.end) {
					m.addDescendants(c)
				}
			}
		}
	}
}

// enterStates enters m.entrySet in document order.
func (m *Machine) enterStates(enabled []*transition) {
	for i := m.entrySet.next(0); i >= 0; i = m.entrySet.next(i + 1) {
		s := m.def.states[i]
		if m.active.has(i) {
			continue
		}
		m.active.add(i)
		m.stale = true
		m.run(s.entry)
		if m.defEntry.has(i) && s.initial != nil {
			m.run(s.initial.actions)
		}
		if t, ok := m.histDef[i]; ok {
			m.run(t.actions)
		}
		if len(s.after) > 0 {
			m.schedule(s)
		}
		if len(s.invokes) > 0 {
			m.toInvoke = append(m.toInvoke, s)
		}
		if s.kind == final {
			m.enteredFinal(s)
		}
	}
}

func (m *Machine) enteredFinal(s *state) {
	p := s.parent
	if p.parent == nil {
		m.reachDone = true
		return
	}
	if m.def.compat != XStateNet {
		m.raise(Event{Name: "done.state." + p.id})
	}
	gp := p.parent
	if gp.kind == parallel && m.inFinal(gp) {
		if gp.parent == nil {
			m.reachDone = true
			return
		}
		m.raise(Event{Name: "done.state." + gp.id})
	}
}

// inFinal is SCXML's isInFinalState.
func (m *Machine) inFinal(s *state) bool {
	switch s.kind {
	case compound:
		for _, c := range s.children {
			if c.kind == final && m.active.has(c.idx) {
				return true
			}
		}
	case parallel:
		for _, c := range s.children {
			if c.kind != history && !m.inFinal(c) {
				return false
			}
		}
		return true
	}
	return false
}

// run runs actions; an error is kept for Send to return and raises
// error.execution.
func (m *Machine) run(actions []Action) {
	for _, a := range actions {
		if err := m.call(a); err != nil {
			m.fail(err)
			m.raise(Event{Name: "error.execution", Data: dataJSON(err.Error())})
		}
	}
}

func (m *Machine) call(a Action) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("statechart: machine %s: an action panicked while handling %q: %v", m.id, m.scope.Event.Name, r)
		}
	}()
	return a(&m.scope)
}

func (m *Machine) raise(ev Event) {
	if len(m.internalQ)-m.qHead >= maxInternalQ {
		m.fail(fmt.Errorf("statechart: machine %s raised more than %d internal events in one macrostep: check for a raise loop", m.id, maxInternalQ))
		return
	}
	m.internalQ = append(m.internalQ, ev)
}

// runSelfSends processes, as further macrosteps, the self-sends queued
// when no event queue is installed, adding the sends they make to out.
func (m *Machine) runSelfSends(out *[]Outgoing) (changed bool) {
	for n := 0; len(m.selfQ) > 0 && m.status == running; n++ {
		if n == maxMicrosteps {
			m.fail(fmt.Errorf("statechart: machine %s sent itself events %d times without settling: check its self-sends for a loop", m.id, maxMicrosteps))
			m.selfQ = nil
			break
		}
		e := m.selfQ[0]
		m.selfQ = m.selfQ[1:]
		if m.macrostep(e) {
			changed = true
		}
		o, _ := m.takeQueues()
		*out = append(*out, o...)
	}
	m.selfQ = nil
	return changed
}

// queueSend keeps a send until the macrostep completes.
func (m *Machine) queueSend(to string, ev Event, d time.Duration) {
	m.outbox = append(m.outbox, Outgoing{To: to, Event: ev, Delay: d})
}

// takeQueues hands over the sends a macrostep made: sends to other
// machines, and self-sends when an event queue is installed.
func (m *Machine) takeQueues() (out []Outgoing, self []Event) {
	if len(m.outbox) == 0 {
		return nil, nil
	}
	out = m.outbox
	m.outbox = nil
	kept := out[:0]
	for _, o := range out {
		switch {
		case o.Delay > 0:
			m.scheduleSend(o)
		case o.To == m.id && m.post == nil:
			m.selfQ = append(m.selfQ, o.Event)
		case o.To == m.id:
			self = append(self, o.Event)
		default:
			kept = append(kept, o)
		}
	}
	return kept, self
}

// dispatch delivers sends after the lock is released.
func (m *Machine) dispatch(out []Outgoing, self []Event) error {
	for _, e := range self {
		m.post(e)
	}
	if len(out) == 0 {
		return nil
	}
	if m.disp == nil {
		return fmt.Errorf("statechart: machine %s sent %q to %s but has no dispatcher: give it one with WithDispatcher, or host it in an orchestrator", m.id, out[0].Event.Name, out[0].To)
	}
	for _, o := range out {
		m.disp.Dispatch(m.id, o)
	}
	return nil
}

// scheduleSend keeps a delayed send on the clock until it is due; Stop
// cancels it.
func (m *Machine) scheduleSend(o Outgoing) {
	tok := m.token()
	m.live[tok] = liveItem{timer: m.clock.AfterFunc(o.Delay, func() {
		m.mu.Lock()
		_, ok := m.live[tok]
		delete(m.live, tok)
		running := m.status == running
		m.mu.Unlock()
		if !ok || !running {
			return
		}
		if o.To == m.id {
			m.postSelf(o.Event)
			return
		}
		if m.disp != nil {
			m.disp.Dispatch(m.id, o)
		}
	})}
}

func (m *Machine) postSelf(ev Event) {
	if m.post != nil {
		m.post(ev)
		return
	}
	_, _ = m.Send(ev)
}

func (m *Machine) token() uint64 {
	m.nextTok++
	if m.live == nil {
		m.live = map[uint64]liveItem{}
	}
	return m.nextTok
}

// schedule starts s's after timers.
func (m *Machine) schedule(s *state) {
	for _, a := range s.after {
		d := time.Duration(a.ms * float64(time.Millisecond))
		if a.named != nil {
			d = a.named(&m.scope)
		}
		tok := m.token()
		ev := Event{Name: a.event, tok: tok, oneShot: true}
		m.live[tok] = liveItem{timer: m.clock.AfterFunc(d, func() { m.postSelf(ev) })}
		m.owned[s.idx] = append(m.owned[s.idx], tok)
	}
}

// startService runs a service in its own goroutine; its done or error
// event carries a token that its state's exit removes.
func (m *Machine) startService(s *state, inv invokeSpec) {
	tok := m.token()
	ctx, cancel := context.WithCancel(context.Background())
	m.live[tok] = liveItem{cancel: cancel}
	m.owned[s.idx] = append(m.owned[s.idx], tok)
	sc := &Scope{Machine: m, m: m, Event: m.scope.Event, Context: deepCopy(m.ctx).(map[string]any)}
	go func() {
		res, err := runService(ctx, inv, sc)
		var ev Event
		if err != nil {
			ev = Event{Name: "error.platform." + inv.id, Data: dataJSON(err.Error()), tok: tok, oneShot: true}
		} else {
			ev = Event{Name: "done.invoke." + inv.id, Data: dataJSON(res), tok: tok, oneShot: true}
		}
		if ctx.Err() != nil {
			return
		}
		m.postSelf(ev)
	}()
}

func runService(ctx context.Context, inv invokeSpec, sc *Scope) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("service %s panicked: %v", inv.src, r)
		}
	}()
	return inv.fn(ctx, sc)
}

// Scope is what actions, guards, services and delays see. It is valid only
// during the call (a service's Scope, for the service's life).
type Scope struct {
	// Machine is the machine running the action.
	Machine *Machine
	// Event is the event being processed.
	Event Event
	// Context is the machine's context; actions may change it (a service
	// gets a copy).
	Context map[string]any

	m *Machine
}

// Raise puts an event on the machine's internal queue: it is processed in
// this macrostep, before any external event.
func (s *Scope) Raise(name string, data any) {
	s.m.raise(Event{Name: name, Data: dataJSON(data), Origin: s.m.id})
}

// Send sends an event to another machine (XStateNet's RequestSend), once
// the macrostep completes.
func (s *Scope) Send(to, name string, data any) {
	s.m.queueSend(to, Event{Name: name, Data: dataJSON(data), Origin: s.m.id}, 0)
}

// SendSelf sends an event to this machine's external queue (XStateNet's
// RequestSelfSend), once the macrostep completes.
func (s *Scope) SendSelf(name string, data any) {
	s.m.queueSend(s.m.id, Event{Name: name, Data: dataJSON(data), Origin: s.m.id}, 0)
}

// SendAfter sends an event to a machine (to == "" or the machine's own id
// for itself) d after the macrostep completes; stopping the machine cancels
// it.
func (s *Scope) SendAfter(d time.Duration, to, name string, data any) {
	if to == "" {
		to = s.m.id
	}
	s.m.queueSend(to, Event{Name: name, Data: dataJSON(data), Origin: s.m.id}, d)
}

// In reports whether a state is active ("a.b", "#id" or "#id.path").
func (s *Scope) In(state string) bool { return s.m.in(state) }

// snapshot is the JSON form of Snapshot.
type snapshot struct {
	Machine       string              `json:"machine"`
	ID            string              `json:"id"`
	Status        string              `json:"status"`
	Configuration []string            `json:"configuration"`
	History       map[string][]string `json:"history,omitempty"`
	Context       map[string]any      `json:"context"`
}

// Snapshot returns the machine's configuration (every active state's path),
// recorded history and context, as JSON. Pending after timers and services
// are not part of it: Restore starts them afresh.
func (m *Machine) Snapshot() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sn := snapshot{Machine: m.def.scriptID, ID: m.id, Status: "running", Context: m.ctx}
	if m.status == done {
		sn.Status = "done"
	}
	for i := m.active.next(1); i >= 0; i = m.active.next(i + 1) {
		sn.Configuration = append(sn.Configuration, m.def.states[i].path)
	}
	for i, hv := range m.hist {
		if hv == nil {
			continue
		}
		if sn.History == nil {
			sn.History = map[string][]string{}
		}
		paths := make([]string, len(hv))
		for j, s := range hv {
			paths[j] = s.path
		}
		sn.History[m.def.states[i].path] = paths
	}
	return json.Marshal(sn)
}

// Restore makes a running machine from a Snapshot of a machine of this
// Definition. Entry actions do not run again; the after timers and services
// of the restored states start afresh.
func (d *Definition) Restore(snap []byte, opts ...Option) (*Machine, error) {
	var sn snapshot
	if err := json.Unmarshal(snap, &sn); err != nil {
		return nil, fmt.Errorf("statechart: cannot read the snapshot: %w", err)
	}
	if sn.Machine != d.scriptID {
		return nil, fmt.Errorf("statechart: the snapshot is of machine %q, not %q", sn.Machine, d.scriptID)
	}
	if sn.ID != "" {
		opts = append([]Option{WithMachineID(sn.ID)}, opts...)
	}
	if sn.Context != nil {
		opts = append([]Option{WithContext(sn.Context)}, opts...)
	}
	m := d.New(opts...)
	m.active.add(0)
	for _, p := range sn.Configuration {
		s := descend(d.root(), p)
		if s == nil || s.kind == history {
			return nil, fmt.Errorf("statechart: the snapshot names state %q, which machine %q does not have", p, d.scriptID)
		}
		for a := s; a != nil; a = a.parent {
			m.active.add(a.idx)
		}
	}
	for hp, paths := range sn.History {
		h := descend(d.root(), hp)
		if h == nil || h.kind != history {
			return nil, fmt.Errorf("statechart: the snapshot names history state %q, which machine %q does not have", hp, d.scriptID)
		}
		rec := make([]*state, 0, len(paths))
		for _, p := range paths {
			s := descend(d.root(), p)
			if s == nil || !h.parent.contains(s) {
				return nil, fmt.Errorf("statechart: the snapshot's history %q names state %q outside it", hp, p)
			}
			rec = append(rec, s)
		}
		m.hist[h.idx] = rec
	}
	if err := m.checkConfiguration(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sn.Status == "done" {
		m.status = done
		return m, nil
	}
	m.status = running
	for i := m.active.next(0); i >= 0; i = m.active.next(i + 1) {
		s := d.states[i]
		if len(s.after) > 0 {
			m.schedule(s)
		}
		if len(s.invokes) > 0 {
			m.toInvoke = append(m.toInvoke, s)
		}
	}
	m.finishMacrostep()
	return m, nil
}

// checkConfiguration checks that the active set is a legal configuration:
// one child of each active compound state, every child of each active
// parallel state.
func (m *Machine) checkConfiguration() error {
	for i := m.active.next(0); i >= 0; i = m.active.next(i + 1) {
		s := m.def.states[i]
		n := 0
		for _, c := range s.children {
			if c.kind != history && m.active.has(c.idx) {
				n++
			}
		}
		switch {
		case s.kind == compound && n != 1:
			return fmt.Errorf("statechart: the snapshot has %d active children of %s; a state with child states has exactly one", n, s.full)
		case s.kind == parallel && n != len(s.children)-len(s.histories):
			return fmt.Errorf("statechart: the snapshot does not have every region of parallel state %s active", s.full)
		}
	}
	return nil
}
