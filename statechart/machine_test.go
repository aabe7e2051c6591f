package statechart_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

func mustLoad(t testing.TB, script string, impl statechart.Implementations, opts ...statechart.LoadOption) *statechart.Definition {
	t.Helper()
	d, err := statechart.Load([]byte(script), impl, opts...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return d
}

func start(t testing.TB, d *statechart.Definition, opts ...statechart.Option) *statechart.Machine {
	t.Helper()
	m := d.New(opts...)
	if err := m.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(m.Stop)
	return m
}

func send(t testing.TB, m *statechart.Machine, name string) statechart.Result {
	t.Helper()
	r, err := m.Send(statechart.Event{Name: name})
	if err != nil {
		t.Fatalf("Send(%s): %v", name, err)
	}
	return r
}

func wantState(t testing.TB, m *statechart.Machine, want string) {
	t.Helper()
	if got := m.State(); got != want {
		t.Fatalf("state %q, want %q", got, want)
	}
}

// The relaxed dialect, entry/exit/transition action order, and the
// XStateNet state string.
func TestActionOrderAndRelaxedScript(t *testing.T) {
	var log []string
	rec := func(name string) statechart.Action {
		return func(*statechart.Scope) error { log = append(log, name); return nil }
	}
	impl := statechart.Implementations{Actions: map[string]statechart.Action{}}
	for _, n := range []string{"enterA", "exitA", "enterB", "enterB1", "go", "exitA1", "enterA1"} {
		impl.Actions[n] = rec(n)
	}
	d := mustLoad(t, `{
		// XStateNet's parser takes comments, unquoted keys and single quotes
		id: 'm', initial: 'a',
		states: {
			a: { entry: 'enterA', exit: ['exitA'], initial: 'a1',
				states: { a1: { entry: 'enterA1', exit: 'exitA1' } },
				on: { GO: { target: 'b', actions: ['go'] }, }, },
			b: { entry: 'enterB', initial: 'b1', states: { b1: { entry: ['enterB1'] } } },
		},
	}`, impl)
	m := start(t, d)
	wantState(t, m, "#m.a.a1")
	if r := send(t, m, "GO"); !r.Changed {
		t.Fatal("GO took no transition")
	}
	wantState(t, m, "#m.b.b1")
	want := []string{"enterA", "enterA1", "exitA1", "exitA", "go", "enterB", "enterB1"}
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("actions ran %v, want %v", log, want)
	}
	if r := send(t, m, "NOPE"); r.Changed {
		t.Fatal("an unknown event changed the machine")
	}
	if got := m.Leaves(); !reflect.DeepEqual(got, []string{"b.b1"}) {
		t.Fatalf("Leaves %v", got)
	}
	if !m.Matches("b") || !m.Matches("#m.b.b1") || m.Matches("a") {
		t.Fatal("Matches disagrees with the configuration")
	}
}

func TestLoadErrorsPointAtTheScript(t *testing.T) {
	impl := statechart.Implementations{}
	cases := []struct {
		script string
		line   int
		path   string
		msg    string
	}{
		{"{id:'m', initial:'a', states:{a:{on:{GO:'nowhere'}}}}", 1, "states.a.on.GO", `unknown target "nowhere"`},
		{"{id:'m', initial:'a',\n states:{a:{entry:'missing'}}}", 2, "states.a.entry", `unknown action "missing"`},
		{"{id:'m', initial:'a',\n states:{a:{on:{GO:{target:'a', cond:'g'}}}}}", 2, "states.a.on.GO.cond", `unknown guard "g"`},
		{"{id:'m', initial:'a', states:{a:{invoke:{src:'svc'}}}}", 1, "states.a.invoke.src", `unknown service "svc"`},
		{"{id:'m', initial:'a', states:{a:{after:{LONG:'a'}}}}", 1, "states.a.after.LONG", `unknown delay "LONG"`},
		{"{id:'m', initial:'a', states:{a:{type:'weird'}}}", 1, "states.a.type", `unknown state type "weird"`},
		{"{id:'m', initial:'zz', states:{a:{}}}", 1, "initial", `initial "zz" is not a child state`},
		{"{id:'m',\n\n states:{a:{on:{GO:'a'}}", 3, "", "is not closed: add }"},
		{"{id:'m', states:{a:{on:{GO:'a'}}}, oops}", 1, "", "expected :"},
	}
	for _, c := range cases {
		_, err := statechart.Load([]byte(c.script), impl, statechart.WithFilename("x.json"))
		var le *statechart.LoadError
		if !errors.As(err, &le) {
			t.Fatalf("%s: got %v, want a *LoadError", c.script, err)
		}
		if le.Line != c.line || le.Path != c.path || !strings.Contains(le.Msg, c.msg) || le.File != "x.json" {
			t.Errorf("%s:\n got %s (line %d path %q)\nwant line %d path %q containing %q", c.script, err, le.Line, le.Path, c.line, c.path, c.msg)
		}
	}
}

// Delayed transitions run on the clock and are cancelled when their state
// exits.
func TestAfterOnAManualClock(t *testing.T) {
	clock := statechart.NewManualClock(time.Unix(0, 0))
	d := mustLoad(t, `{id:'light', initial:'green', states:{
		green:{after:{1000:'yellow'}, on:{EMERGENCY:'red'}},
		yellow:{after:{500:'red'}},
		red:{after:{2000:'green'}}}}`, statechart.Implementations{})
	m := start(t, d, statechart.WithClock(clock))
	clock.Advance(999 * time.Millisecond)
	wantState(t, m, "#light.green")
	clock.Advance(time.Millisecond)
	wantState(t, m, "#light.yellow")
	clock.Advance(500 * time.Millisecond)
	wantState(t, m, "#light.red")
	clock.Advance(2000 * time.Millisecond)
	wantState(t, m, "#light.green")
	send(t, m, "EMERGENCY")
	wantState(t, m, "#light.red")
	if n := clock.Pending(); n != 1 {
		t.Fatalf("%d timers pending after green exited, want 1 (red's)", n)
	}
	clock.Advance(1000 * time.Millisecond) // green's old timer would have fired here
	wantState(t, m, "#light.red")
}

// A compound state's final child raises done.state; a parallel state's
// done event waits for every region (SCXML). XStateNet mode keeps only the
// parallel one.
func TestDoneEvents(t *testing.T) {
	script := `{id:'job', initial:'work', states:{
		work:{initial:'a', states:{a:{on:{NEXT:'end'}}, end:{type:'final'}}, onDone:'checked'},
		checked:{type:'parallel', states:{
			x:{initial:'x1', states:{x1:{on:{X:'xf'}}, xf:{type:'final'}}},
			y:{initial:'y1', states:{y1:{on:{Y:'yf'}}, yf:{type:'final'}}}},
			onDone:'finished'},
		finished:{type:'final'}}}`
	m := start(t, mustLoad(t, script, statechart.Implementations{}))
	send(t, m, "NEXT")
	wantState(t, m, "#job.checked.x.x1;#job.checked.y.y1")
	send(t, m, "X")
	wantState(t, m, "#job.checked.x.xf;#job.checked.y.y1")
	if r := send(t, m, "Y"); !r.Done {
		t.Fatal("reaching the top-level final state did not report Done")
	}
	wantState(t, m, "#job.finished")
	if _, err := m.Send(statechart.Event{Name: "Y"}); !errors.Is(err, statechart.ErrDone) {
		t.Fatalf("Send after done: %v, want ErrDone", err)
	}

	x := start(t, mustLoad(t, script, statechart.Implementations{}, statechart.WithCompat(statechart.XStateNet)))
	send(t, x, "NEXT")
	wantState(t, x, "#job.work.end") // XStateNet: no onDone for a compound state
}

func TestHistoryShallowAndDeep(t *testing.T) {
	d := mustLoad(t, `{id:'h', initial:'on', states:{
		on:{initial:'a', states:{
			a:{initial:'a1', states:{a1:{on:{N:'a2'}}, a2:{}}, on:{B:'b'}},
			b:{},
			hs:{type:'history'},
			hd:{type:'history', history:'deep'}},
			on:{OFF:'off'}},
		off:{on:{SHALLOW:'on.hs', DEEP:'on.hd', PLAIN:'on'}}}}`, statechart.Implementations{})
	m := start(t, d)
	send(t, m, "N")
	wantState(t, m, "#h.on.a.a2")
	send(t, m, "OFF")
	send(t, m, "DEEP")
	wantState(t, m, "#h.on.a.a2")
	send(t, m, "OFF")
	send(t, m, "SHALLOW")
	wantState(t, m, "#h.on.a.a1")
	send(t, m, "OFF")
	send(t, m, "PLAIN")
	wantState(t, m, "#h.on.a.a1")
}

// Guards, in-conditions, eventless transitions, raised events, assign and
// the internal queue before external events.
func TestGuardsAlwaysAndRaise(t *testing.T) {
	impl := statechart.Implementations{
		Actions: map[string]statechart.Action{
			"inc": func(s *statechart.Scope) error { s.Context["n"] = s.Context["n"].(float64) + 1; return nil },
			"ping": func(s *statechart.Scope) error {
				s.Raise("PING", nil)
				return nil
			},
		},
		Guards: map[string]statechart.Guard{
			"three": func(s *statechart.Scope) bool { return s.Context["n"].(float64) >= 3 },
		},
	}
	d := mustLoad(t, `{id:'g', initial:'count', context:{n:0}, type:'compound', states:{
		count:{on:{INC:{actions:'inc'}}, always:{target:'full', cond:'three'}},
		full:{entry:['ping', {type:'assign', assignment:{label:'full'}}], on:{PING:'pinged'}},
		pinged:{}}}`, impl)
	m := start(t, d)
	send(t, m, "INC")
	send(t, m, "INC")
	wantState(t, m, "#g.count")
	send(t, m, "INC") // always → full, whose entry raises PING → pinged, all in one macrostep
	wantState(t, m, "#g.pinged")
	if ctx := m.Context(); ctx["n"] != 3.0 || ctx["label"] != "full" {
		t.Fatalf("context %v", ctx)
	}
}

func TestAlwaysLoopStopsWithAnError(t *testing.T) {
	d := mustLoad(t, `{id:'l', initial:'a', states:{a:{always:'b'}, b:{always:'a'}}}`, statechart.Implementations{})
	m := d.New()
	if err := m.Start(); err == nil || !strings.Contains(err.Error(), "microsteps") {
		t.Fatalf("Start of an always-loop: %v", err)
	}
}

// Sends from actions reach the Dispatcher after the macrostep; self-sends
// are processed before Send returns; two machines play ping-pong.
func TestPingPongThroughADispatcher(t *testing.T) {
	machines := map[string]*statechart.Machine{}
	var mu sync.Mutex
	var queue []statechart.Outgoing
	disp := statechart.DispatcherFunc(func(from string, o statechart.Outgoing) {
		mu.Lock()
		queue = append(queue, o)
		mu.Unlock()
	})
	impl := statechart.Implementations{
		Actions: map[string]statechart.Action{
			"ping": func(s *statechart.Scope) error { s.Send("pong", "PING", map[string]int{"n": 1}); return nil },
			"pong": func(s *statechart.Scope) error { s.Send(s.Event.Origin, "PONG", nil); return nil },
		},
	}
	ping := mustLoad(t, `{id:'ping', initial:'idle', states:{idle:{on:{START:{target:'waiting', actions:'ping'}}}, waiting:{on:{PONG:'idle'}}}}`, impl)
	pong := mustLoad(t, `{id:'pong', initial:'ready', states:{ready:{on:{PING:{actions:'pong'}}}}}`, impl)
	machines["ping"] = start(t, ping, statechart.WithDispatcher(disp))
	machines["pong"] = start(t, pong, statechart.WithDispatcher(disp))
	send(t, machines["ping"], "START")
	for i := 0; len(queue) > 0 && i < 10; i++ {
		o := queue[0]
		queue = queue[1:]
		if _, err := machines[o.To].Send(o.Event); err != nil {
			t.Fatal(err)
		}
	}
	wantState(t, machines["ping"], "#ping.idle")

	// Without a dispatcher, a send to another machine is an error that
	// says what to do.
	lone := start(t, ping)
	if _, err := lone.Send(statechart.Event{Name: "START"}); err == nil || !strings.Contains(err.Error(), "WithDispatcher") {
		t.Fatalf("send without a dispatcher: %v", err)
	}

	self := mustLoad(t, `{id:'s', initial:'a', states:{a:{on:{GO:{target:'b', actions:{type:'send', event:'AGAIN'}}}}, b:{on:{AGAIN:'c'}}, c:{}}}`, statechart.Implementations{})
	sm := start(t, self)
	send(t, sm, "GO")
	wantState(t, sm, "#s.c")
}

func TestInvokeDoneErrorAndCancel(t *testing.T) {
	release := make(chan struct{})
	cancelled := make(chan struct{})
	impl := statechart.Implementations{Services: map[string]statechart.Service{
		"fetch": func(ctx context.Context, s *statechart.Scope) (any, error) { return map[string]int{"rows": 7}, nil },
		"fail":  func(ctx context.Context, s *statechart.Scope) (any, error) { return nil, errors.New("disk on fire") },
		"wait": func(ctx context.Context, s *statechart.Scope) (any, error) {
			select {
			case <-ctx.Done():
				close(cancelled)
			case <-release:
			}
			return nil, ctx.Err()
		},
	}}
	d := mustLoad(t, `{id:'inv', initial:'loading', states:{
		loading:{invoke:{src:'fetch', onDone:'failing'}},
		failing:{invoke:{id:'f', src:'fail', onError:'waiting'}},
		waiting:{invoke:{src:'wait', onDone:'never'}, on:{SKIP:'done'}},
		never:{}, done:{}}}`, impl)
	var mu sync.Mutex
	var data []string
	m := d.New()
	m.Subscribe(func(s statechart.Step) {
		mu.Lock()
		data = append(data, s.Event.Name+" "+string(s.Event.Data))
		mu.Unlock()
	})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	waitFor(t, func() bool { return m.Matches("waiting") })
	send(t, m, "SKIP")
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the service of an exited state was not cancelled")
	}
	wantState(t, m, "#inv.done")
	mu.Lock()
	defer mu.Unlock()
	want := []string{"xstate.init ", `done.invoke.fetch {"rows":7}`, `error.platform.f "disk on fire"`, "SKIP "}
	if !reflect.DeepEqual(data, want) {
		t.Fatalf("steps %q, want %q", data, want)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSnapshotRestore(t *testing.T) {
	d := mustLoad(t, `{id:'s', initial:'p', context:{k:'v'}, states:{
		p:{type:'parallel', states:{
			x:{initial:'x1', states:{x1:{on:{X:'x2'}}, x2:{}, xh:{type:'history'}}},
			y:{initial:'y1', states:{y1:{on:{Y:'y2'}}, y2:{after:{100:'y1'}}}}},
			on:{OUT:'out'}},
		out:{on:{BACK:'p.x.xh'}}}}`, statechart.Implementations{})
	clock := statechart.NewManualClock(time.Unix(0, 0))
	m := start(t, d, statechart.WithClock(clock))
	send(t, m, "X")
	send(t, m, "OUT")
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Restore(snap, statechart.WithClock(clock))
	if err != nil {
		t.Fatalf("Restore(%s): %v", snap, err)
	}
	defer r.Stop()
	wantState(t, r, "#s.out")
	send(t, r, "BACK") // history recorded before the snapshot
	wantState(t, r, "#s.p.x.x2;#s.p.y.y1")
	send(t, r, "Y")
	snap2, _ := r.Snapshot()
	r2, err := d.Restore(snap2, statechart.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Stop()
	wantState(t, r2, "#s.p.x.x2;#s.p.y.y2")
	clock.Advance(100 * time.Millisecond) // restored states' timers start afresh
	wantState(t, r2, "#s.p.x.x2;#s.p.y.y1")
	var sn map[string]any
	_ = json.Unmarshal(snap2, &sn)
	if sn["context"].(map[string]any)["k"] != "v" {
		t.Fatalf("snapshot lost the context: %s", snap2)
	}

	for _, bad := range []string{
		`{"machine":"other","configuration":[]}`,
		`{"machine":"s","configuration":["p","p.x","p.x.x1"]}`, // region y missing
		`{"machine":"s","configuration":["nowhere"]}`,
	} {
		if _, err := d.Restore([]byte(bad)); err == nil {
			t.Errorf("Restore(%s) accepted a bad snapshot", bad)
		}
	}
}

func TestSendBeforeStartAndAfterStop(t *testing.T) {
	d := mustLoad(t, `{id:'x', initial:'a', states:{a:{}}}`, statechart.Implementations{})
	m := d.New()
	if _, err := m.Send(statechart.Event{Name: "E"}); !errors.Is(err, statechart.ErrNotStarted) {
		t.Fatalf("before Start: %v", err)
	}
	_ = m.Start()
	m.Stop()
	if _, err := m.Send(statechart.Event{Name: "E"}); !errors.Is(err, statechart.ErrStopped) {
		t.Fatalf("after Stop: %v", err)
	}
}

// An action's error is returned by Send and raises error.execution; a
// panicking action does not take the machine down.
func TestActionErrors(t *testing.T) {
	impl := statechart.Implementations{Actions: map[string]statechart.Action{
		"bad":   func(*statechart.Scope) error { return errors.New("no paper") },
		"panic": func(*statechart.Scope) error { panic("boom") },
	}}
	d := mustLoad(t, `{id:'e', initial:'a', states:{
		a:{on:{GO:{target:'b', actions:'bad'}, P:{actions:'panic'}}},
		b:{on:{'error.execution':'failed'}}, failed:{}}}`, impl)
	m := start(t, d)
	if _, err := m.Send(statechart.Event{Name: "P"}); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("panicking action: %v", err)
	}
	_, err := m.Send(statechart.Event{Name: "GO"})
	if err == nil || !strings.Contains(err.Error(), "no paper") {
		t.Fatalf("failing action: %v", err)
	}
	wantState(t, m, "#e.failed")
}

// XStateNet mode: a recorded history is restored on any entry of its
// parent; an unregistered guard counts as true.
func TestXStateNetCompatHistoryAndGuards(t *testing.T) {
	script := `{id:'c', initial:'on', states:{
		on:{initial:'a', states:{a:{on:{N:'b'}}, b:{}, h:{type:'history'}}, on:{OFF:'off'}},
		off:{on:{ON:'on', MAYBE:{target:'on', cond:'nobodyRegisteredThis'}}}}}`
	if _, err := statechart.Load([]byte(script), statechart.Implementations{}); err == nil {
		t.Fatal("SCXML mode accepted an unregistered guard")
	}
	for _, c := range []struct {
		compat statechart.Compat
		want   string
	}{{statechart.XStateNet, "#c.on.b"}} {
		m := start(t, mustLoad(t, script, statechart.Implementations{}, statechart.WithCompat(c.compat)))
		send(t, m, "N")
		send(t, m, "OFF")
		send(t, m, "ON")
		wantState(t, m, c.want)
		send(t, m, "OFF")
		send(t, m, "MAYBE")
		wantState(t, m, c.want)
	}
	plain := start(t, mustLoad(t, strings.Replace(script, ", MAYBE:{target:'on', cond:'nobodyRegisteredThis'}", "", 1), statechart.Implementations{}))
	send(t, plain, "N")
	send(t, plain, "OFF")
	send(t, plain, "ON")
	wantState(t, plain, "#c.on.a")
}

// A zero-delay after that re-enters its own state is a loop on any clock;
// ManualClock.Advance returns instead of hanging the test.
func TestManualClockStopsAZeroDelayLoop(t *testing.T) {
	d := mustLoad(t, `{id:'z', initial:'a', context:{n:0}, states:{a:{entry:'count', after:{0:'a'}}}}`, statechart.Implementations{
		Actions: map[string]statechart.Action{"count": func(s *statechart.Scope) error { s.Context["n"] = s.Context["n"].(float64) + 1; return nil }},
	})
	c := statechart.NewManualClock(time.Unix(0, 0))
	m := start(t, d, statechart.WithClock(c))
	c.Advance(time.Second)
	if n := m.Context()["n"].(float64); n < 1000 || c.Pending() != 1 {
		t.Fatalf("entered %v times, %d timers pending", n, c.Pending())
	}
}

// XStateNet's history key on a compound state: a load error that says what
// to write instead, and in XStateNet mode an implicit history child.
func TestHistoryKeyOnACompoundState(t *testing.T) {
	script := `{id:'m', initial:'A', states:{
		A:{history:'deep', initial:'A1', states:{A1:{initial:'x', states:{x:{on:{N:'y'}}, y:{}}}, A2:{}}, on:{B:'B'}},
		B:{on:{A:'A'}}}}`
	_, err := statechart.Load([]byte(script), statechart.Implementations{})
	var le *statechart.LoadError
	if !errors.As(err, &le) || le.Path != "states.A.history" || !strings.Contains(le.Msg, "type: 'history'") {
		t.Fatalf("history key in SCXML mode: %v", err)
	}
	m := start(t, mustLoad(t, script, statechart.Implementations{}, statechart.WithCompat(statechart.XStateNet)))
	send(t, m, "N")
	send(t, m, "B")
	send(t, m, "A")
	wantState(t, m, "#m.A.A1.y")
}

// target '.': the state itself (exit and re-enter) in SCXML mode, no target
// in XStateNet mode.
func TestDotTarget(t *testing.T) {
	for _, c := range []struct {
		compat  statechart.Compat
		entries float64
	}{{statechart.SCXML, 2}, {statechart.XStateNet, 1}} {
		impl := statechart.Implementations{Actions: map[string]statechart.Action{
			"count": func(s *statechart.Scope) error { s.Context["n"] = s.Context["n"].(float64) + 1; return nil },
		}}
		m := start(t, mustLoad(t, `{id:'d', initial:'a', context:{n:0}, states:{a:{entry:'count', on:{STAY:'.'}}}}`, impl, statechart.WithCompat(c.compat)))
		send(t, m, "STAY")
		if n := m.Context()["n"]; n != c.entries {
			t.Errorf("compat %d: entered a %v times, want %v", c.compat, n, c.entries)
		}
	}
}
