package statechart_test

import (
	"testing"

	"github.com/statebus/statebus/statechart"
)

// BenchmarkFlat: a two-state toggle, one transition per Send.
func BenchmarkFlat(b *testing.B) {
	d := mustLoad(b, `{id:'t', initial:'off', states:{off:{on:{T:'on'}}, on:{on:{T:'off'}}}}`, statechart.Implementations{})
	benchSend(b, start(b, d))
}

// BenchmarkFlatAction: the same with an entry action and a guard.
func BenchmarkFlatAction(b *testing.B) {
	n := 0
	impl := statechart.Implementations{
		Actions: map[string]statechart.Action{"count": func(*statechart.Scope) error { n++; return nil }},
		Guards:  map[string]statechart.Guard{"ok": func(*statechart.Scope) bool { return true }},
	}
	d := mustLoad(b, `{id:'t', initial:'off', states:{
		off:{on:{T:{target:'on', cond:'ok'}}},
		on:{entry:'count', on:{T:{target:'off', cond:'ok'}}}}}`, impl)
	benchSend(b, start(b, d))
}

// BenchmarkParallel4: four regions each toggling on the same event: one
// Send takes four transitions.
func BenchmarkParallel4(b *testing.B) {
	region := `{initial:'off', states:{off:{on:{T:'on'}}, on:{on:{T:'off'}}}}`
	d := mustLoad(b, `{id:'p', type:'parallel', states:{r1:`+region+`, r2:`+region+`, r3:`+region+`, r4:`+region+`}}`, statechart.Implementations{})
	benchSend(b, start(b, d))
	b.ReportMetric(float64(b.N*4)/b.Elapsed().Seconds(), "transitions/s")
}

// BenchmarkDeep: a transition between leaves of two nested compound states
// (exit three, enter three).
func BenchmarkDeep(b *testing.B) {
	d := mustLoad(b, `{id:'d', initial:'a', states:{
		a:{initial:'a1', states:{a1:{initial:'a2', states:{a2:{on:{T:'#d.b.b1.b2'}}}}}},
		b:{initial:'b1', states:{b1:{initial:'b2', states:{b2:{on:{T:'#d.a.a1.a2'}}}}}}}}`, statechart.Implementations{})
	benchSend(b, start(b, d))
}

// BenchmarkFlatWithState: a transition and the new state string, as the
// orchestrator's Send reports it.
func BenchmarkFlatWithState(b *testing.B) {
	d := mustLoad(b, `{id:'t', initial:'off', states:{off:{on:{T:'on'}}, on:{on:{T:'off'}}}}`, statechart.Implementations{})
	m := start(b, d)
	ev := statechart.Event{Name: "T"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Send(ev); err != nil {
			b.Fatal(err)
		}
		_ = m.State()
	}
}

// benchSend sends T to m b.N times.
func benchSend(b *testing.B, m *statechart.Machine) {
	ev := statechart.Event{Name: "T"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Send(ev); err != nil {
			b.Fatal(err)
		}
	}
}
