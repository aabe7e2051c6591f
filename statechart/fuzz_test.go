package statechart_test

import (
	"context"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

// FuzzLoad: no script makes Load, Start, Send, Snapshot or Restore panic
// or run away, and a snapshot restores to the same state.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		`{id:'t', initial:'off', states:{off:{on:{T:'on'}}, on:{on:{T:'off'}}}}`,
		`{id:'p', type:'parallel', states:{a:{initial:'a1', states:{a1:{on:{X:'a2'}}, a2:{type:'final'}}}, b:{}}, onDone:'p'}`,
		`{id:'h', initial:'a', states:{a:{initial:'x', states:{x:{on:{N:'y'}}, y:{}, h:{type:'history', history:'deep'}}, on:{O:'b'}}, b:{on:{B:'a.h'}}}}`,
		`{id:'w', initial:'a', states:{a:{on:{'*':'b', 'x.*':{target:'c', internal:true}}, always:{target:'b', cond:'g'}, after:{10:'c', D:'b'}}, b:{entry:{type:'raise', event:'T'}, on:{T:'#w.c'}}, c:{invoke:{src:'s', onDone:'a'}}}}`,
		`{"id":"j","initial":"a","states":{"a":{"entry":["act",{"type":"assign","assignment":{"k":1}}],"on":{"":"b"}},"b":{"type":"final"}}}`,
		"// c\n{id:'c' /* x */, states:{a:{},},}",
	} {
		f.Add([]byte(s))
	}
	impl := statechart.Implementations{
		Actions: map[string]statechart.Action{"act": func(s *statechart.Scope) error { s.Raise("T", nil); return nil }},
		Guards:  map[string]statechart.Guard{"g": func(*statechart.Scope) bool { return false }},
		Services: map[string]statechart.Service{"s": func(ctx context.Context, _ *statechart.Scope) (any, error) {
			<-ctx.Done() // a service that finished would move the machine while the test compares
			return nil, ctx.Err()
		}},
		Delays: map[string]statechart.Delay{"D": func(*statechart.Scope) time.Duration { return time.Second }},
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		d, err := statechart.Load(script, impl)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		clock := statechart.NewManualClock(time.Unix(0, 0))
		m := d.New(statechart.WithClock(clock))
		defer m.Stop()
		_ = m.Start()
		for _, e := range []string{"T", "X", "x.y", "N", "O", "B", "done.state.p"} {
			_, _ = m.Send(statechart.Event{Name: e})
			clock.Advance(time.Second)
		}
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		r, err := d.Restore(snap, statechart.WithClock(clock))
		if err != nil {
			t.Fatalf("Restore of its own snapshot: %v\n%s", err, snap)
		}
		defer r.Stop()
		if r.State() != m.State() {
			t.Fatalf("restored %q, was %q", r.State(), m.State())
		}
	})
}
