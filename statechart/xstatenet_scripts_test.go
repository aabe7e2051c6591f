package statechart

// Loading XStateNet's real scripts (the SEMI standard machines and the
// ping-pong benchmark's), and our own testdata scripts in the same dialect.
// The test finds every action, guard, service and delay name a script uses
// by walking the parsed script, registers a no-op for each, starts the
// machine and drives it: each step sends the first event that an active
// state handles and that has not been sent yet, and when none is handled it
// advances the clock so after transitions fire.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// xsnNames are the names a script refers to.
type xsnNames struct {
	actions, guards, services, delays map[string]bool
}

func xsnCollectNames(v *value) xsnNames {
	n := xsnNames{map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}}
	n.state(v)
	return n
}

func (n xsnNames) state(v *value) {
	if v == nil || v.kind != kObject {
		return
	}
	for _, f := range v.fields {
		switch f.key {
		case "entry", "exit", "onEntry", "onExit":
			n.actionList(f.val)
		case "on":
			for _, ef := range f.val.fields {
				n.transitions(ef.val)
			}
		case "always", "onDone":
			n.transitions(f.val)
		case "after":
			for _, af := range f.val.fields {
				if _, err := strconv.ParseFloat(af.key, 64); err != nil {
					n.delays[af.key] = true
				}
				n.transitions(af.val)
			}
		case "invoke":
			invs := []*value{f.val}
			if f.val.kind == kArray {
				invs = f.val.items
			}
			for _, inv := range invs {
				if src := inv.get("src"); src != nil && src.kind == kString {
					n.services[src.str] = true
				}
				n.transitions(inv.get("onDone"))
				n.transitions(inv.get("onError"))
			}
		case "states":
			for _, sf := range f.val.fields {
				n.state(sf.val)
			}
		}
	}
}

func (n xsnNames) transitions(v *value) {
	if v == nil {
		return
	}
	switch v.kind {
	case kArray:
		for _, it := range v.items {
			n.transitions(it)
		}
	case kObject:
		n.actionList(v.get("actions"))
		for _, key := range []string{"cond", "guard"} {
			g := v.get(key)
			switch {
			case g == nil:
			case g.kind == kString:
				n.guards[g.str] = true
			case g.kind == kObject && g.get("type") != nil:
				n.guards[g.get("type").str] = true
			}
		}
	}
}

func (n xsnNames) actionList(v *value) {
	if v == nil {
		return
	}
	items := []*value{v}
	if v.kind == kArray {
		items = v.items
	}
	for _, it := range items {
		switch it.kind {
		case kString:
			n.actions[it.str] = true
		case kObject:
			typ := it.get("type")
			if typ == nil {
				continue
			}
			switch typ.str {
			case "assign", "raise":
			case "send", "sendTo":
				if d := it.get("delay"); d != nil && d.kind == kString {
					n.delays[d.str] = true
				}
			default:
				n.actions[typ.str] = true
			}
		}
	}
}

// impl registers a no-op for every name: actions do nothing, guards pass,
// services wait until their state exits, delays are a second.
func (n xsnNames) impl() Implementations {
	impl := Implementations{Actions: map[string]Action{}, Guards: map[string]Guard{}, Services: map[string]Service{}, Delays: map[string]Delay{}}
	for a := range n.actions {
		impl.Actions[a] = func(*Scope) error { return nil }
	}
	for g := range n.guards {
		impl.Guards[g] = func(*Scope) bool { return true }
	}
	for s := range n.services {
		impl.Services[s] = func(ctx context.Context, _ *Scope) (any, error) { <-ctx.Done(); return nil, nil }
	}
	for d := range n.delays {
		impl.Delays[d] = func(*Scope) time.Duration { return time.Second }
	}
	return impl
}

// xsnHandled lists, in document order from the root down, the events the
// states on path (a leaf path from Leaves) handle.
func xsnHandled(root *value, path string) []string {
	var evs []string
	node := root
	keys := strings.Split(path, ".")
	for i := 0; node != nil; i++ {
		if on := node.get("on"); on != nil && on.kind == kObject {
			for _, f := range on.fields {
				if f.key != "" && !strings.Contains(f.key, "*") {
					evs = append(evs, f.key)
				}
			}
		}
		if i == len(keys) || path == "" {
			break
		}
		states := node.get("states")
		if states == nil {
			break
		}
		node = states.get(keys[i])
	}
	return evs
}

// xsnDrive loads and drives one script file; it returns a line for the
// report or fails the test.
func xsnDrive(t *testing.T, file string) {
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	v, serr := parseScript(src)
	if serr != nil {
		t.Fatalf("%s:%d:%d: %s", file, serr.line, serr.col, serr.msg)
	}
	names := xsnCollectNames(v)
	def, err := Load(src, names.impl(), WithFilename(filepath.Base(file)))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	clock := NewManualClock(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	m := def.New(WithClock(clock), WithDispatcher(DispatcherFunc(func(string, Outgoing) {})))
	defer m.Stop()
	if err := m.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	sent := map[string]bool{}
	var trail []string
	changes := 0
	for step := 0; step < 25 && !m.Done(); step++ {
		var handled []string
		for _, leaf := range m.Leaves() {
			handled = append(handled, xsnHandled(v, leaf)...)
		}
		if len(handled) == 0 {
			before := m.State()
			clock.Advance(time.Hour)
			if m.State() == before {
				break
			}
			changes++
			trail = append(trail, "(1h)")
			continue
		}
		ev := handled[step%len(handled)]
		for _, h := range handled {
			if !sent[h] {
				ev = h
				break
			}
		}
		sent[ev] = true
		res, err := m.Send(Event{Name: ev})
		if err != nil && !errors.Is(err, ErrDone) {
			t.Fatalf("after %v: Send(%s): %v", trail, ev, err)
		}
		if res.Changed {
			changes++
		}
		trail = append(trail, ev)
	}
	if changes == 0 {
		t.Errorf("no step changed anything (events tried: %v)", trail)
	}
	t.Logf("%s: %d names (%d actions, %d guards, %d services, %d delays); %d steps %v; now %s, done %v",
		filepath.Base(file), len(names.actions)+len(names.guards)+len(names.services)+len(names.delays),
		len(names.actions), len(names.guards), len(names.services), len(names.delays), len(trail), trail, m.State(), m.Done())
}

// TestXStateNetScripts loads XStateNet's own scripts from a checkout of
// digitect38/XStateNet named by $STATEBUS_XSTATENET_DIR.
func TestXStateNetScripts(t *testing.T) {
	dir := os.Getenv("STATEBUS_XSTATENET_DIR")
	if dir == "" {
		t.Skip("STATEBUS_XSTATENET_DIR is not set: point it at a checkout of github.com/digitect38/XStateNet " +
			"(it needs SemiStandard/XStateScripts/*.json and XStateNet2/XStateNet2.PingPong/*.json) to load XStateNet's own scripts")
	}
	files, err := filepath.Glob(filepath.Join(dir, "SemiStandard", "XStateScripts", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PingMachine.json", "PongMachine.json"} {
		files = append(files, filepath.Join(dir, "XStateNet2", "XStateNet2.PingPong", name))
	}
	if len(files) <= 2 {
		t.Fatalf("no SemiStandard/XStateScripts/*.json under %s: is STATEBUS_XSTATENET_DIR a checkout of digitect38/XStateNet?", dir)
	}
	sort.Strings(files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { xsnDrive(t, f) })
	}
}

// TestXStateNetTestdataScripts loads and drives our own scripts in
// XStateNet's dialect (statechart/testdata/xstatenet-*.json); it always runs.
func TestXStateNetTestdataScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "xstatenet-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/xstatenet-*.json")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { xsnDrive(t, f) })
	}
}
