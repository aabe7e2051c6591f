package statechart_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

// Scripts that do not load: the *LoadError must point at the right place
// (line and column of the offending text, the key path) and say what to do.
var xsnLoadErrorCases = []struct {
	name   string
	script string
	at     string   // the error's line and column are where this text first appears ("": the script's end)
	path   string   // LoadError.Path
	msg    []string // substrings of LoadError.Msg: what is wrong and what to do
}{
	{
		name: "unknown target, string form",
		script: `{
  id: 'm',
  initial: 'a',
  states: {
    a: { on: { GO: 'nowhere' } },
    b: {}
  }
}`,
		at:   "'nowhere'",
		path: "states.a.on.GO",
		msg:  []string{`unknown target "nowhere"`, "sibling", "#id"},
	},
	{
		name: "unknown target, object form",
		script: `{
  id: 'm',
  initial: 'a',
  states: {
    a: { on: { GO: { target: 'nowhere', actions: [] } } },
    b: {}
  }
}`,
		at:   "'nowhere'",
		path: "states.a.on.GO.target",
		msg:  []string{`unknown target "nowhere"`},
	},
	{
		name: "unknown target in a list of transitions",
		script: `{
  id: 'm',
  initial: 'a',
  states: {
    a: { on: { GO: [ { target: 'b', cond: 'ok' }, { target: '#m.b.deeper' } ] } },
    b: {}
  }
}`,
		at:   "'#m.b.deeper'",
		path: "states.a.on.GO[1].target",
		msg:  []string{`unknown target "#m.b.deeper"`},
	},
	{
		name: "unknown target among several",
		script: `{
  id: 'm',
  type: 'parallel',
  on: { RESET: { target: [ '.r1.x', '.r2.nope' ] } },
  states: {
    r1: { initial: 'x', states: { x: {} } },
    r2: { initial: 'y', states: { y: {} } }
  }
}`,
		at:   "'.r2.nope'",
		path: "on.RESET.target",
		msg:  []string{`unknown target ".r2.nope"`},
	},
	{
		name: "unknown action",
		script: `{
  id: 'E87',
  initial: 'Mapping',
  states: {
    Mapping: {
      entry: [ 'ok', 'startMaping' ],
    },
  },
}`,
		at:   "'startMaping'",
		path: "states.Mapping.entry[1]",
		msg:  []string{`unknown action "startMaping"`, "Implementations.Actions"},
	},
	{
		name: "unknown transition action",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { on: { GO: { target: 'b', actions: 'logGo' } } }, b: {} }
}`,
		at:   "'logGo'",
		path: "states.a.on.GO.actions",
		msg:  []string{`unknown action "logGo"`, "Implementations.Actions"},
	},
	{
		name: "unknown guard",
		script: `{
  id: 'trafficLight', initial: 'red',
  states: {
    red: { on: { TIMER: { target: 'green', guard: 'isReady' } } },
    green: {}
  }
}`,
		at:   "'isReady'",
		path: "states.red.on.TIMER.guard",
		msg:  []string{`unknown guard "isReady"`, "Implementations.Guards"},
	},
	{
		name: "unknown guard, cond key",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { always: [ { target: 'b', cond: 'isBig' } ] }, b: {} }
}`,
		at:   "'isBig'",
		path: "states.a.always[0].cond",
		msg:  []string{`unknown guard "isBig"`},
	},
	{
		name: "unknown service",
		script: `{
  id: 'machineId', initial: 'fetching',
  states: {
    fetching: { invoke: { src: 'fetchData', onDone: 'done' } },
    done: { type: 'final' }
  }
}`,
		at:   "'fetchData'",
		path: "states.fetching.invoke.src",
		msg:  []string{`unknown service "fetchData"`, "Implementations.Services"},
	},
	{
		name: "unknown delay in after",
		script: `{
  id: 'e30', initial: 'waitDelay',
  states: {
    waitDelay: { after: { commDelay: 'waitCRA' } },
    waitCRA: {}
  }
}`,
		at:   "commDelay",
		path: "states.waitDelay.after.commDelay",
		msg:  []string{`unknown delay "commDelay"`, "Implementations.Delays", "milliseconds"},
	},
	{
		name: "unknown delay in a send",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { entry: [ { type: 'send', event: 'PING', to: 'pong', delay: 'later' } ] } }
}`,
		at:   "'later'",
		path: "states.a.entry[0].delay",
		msg:  []string{`unknown delay "later"`, "Implementations.Delays"},
	},
	{
		name: "bad state type",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { type: 'paralel', states: { x: {}, y: {} } } }
}`,
		at:   "'paralel'",
		path: "states.a.type",
		msg:  []string{`"paralel"`, "parallel", "final", "history"},
	},
	{
		name: "unknown state key",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { exti: 'leave' } }
}`,
		at:   "'leave'",
		path: "states.a.exti",
		msg:  []string{`"exti"`, "exit"},
	},
	{
		name: "unknown initial",
		script: `{
  id: 'm',
  initial: 'idle',
  states: { Idle: {} }
}`,
		at:   "'idle'",
		path: "initial",
		msg:  []string{`"idle"`, "child"},
	},
	{
		name: "in names no state",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { on: { GO: { target: 'b', in: '#m.c' } } }, b: {} }
}`,
		at:   "'#m.c'",
		path: "states.a.on.GO.in",
		msg:  []string{`"#m.c"`, "#id"},
	},
	{
		name: "initial on a parallel state",
		script: `{
  'id': 'inConditionMachine',
  'initial': 'parallelState',
  'type' : 'parallel',
  'states': { 'stateA': {}, 'stateB': {} }
}`,
		at:   "'parallelState'",
		path: "initial",
		msg:  []string{"parallel", "remove"},
	},
	{
		name: "history key on a compound state",
		script: `{
  id: 'm', initial: 'A',
  states: { A: { history: 'deep', initial: 'A1', states: { A1: {} } } }
}`,
		at:   "'deep'",
		path: "states.A.history",
		msg:  []string{"type: 'history'", "add one and target it"},
	},
	{
		name: "missing comma",
		script: `{
  id: 'm'
  initial: 'a',
  states: { a: {} }
}`,
		at:  "initial",
		msg: []string{"expected , or }"},
	},
	{
		name: "unquoted string",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { on: { GO: b } }, b: {} }
}`,
		at:  "b } }",
		msg: []string{`"b"`, "quote"},
	},
	{
		name: "string not closed",
		script: `{
  id: 'm', initial: 'a',
  states: { a: { entry: 'log },
}`,
		at:  "\n}", // the line break that ends the string's line
		msg: []string{"line break", "close the string"},
	},
	{
		name: "object not closed",
		script: `{
  id: 'm', initial: 'a',
  states: { a: {} }
`,
		at:  "", // the end of the script
		msg: []string{"line 1, column 1", "not closed", "add }"},
	},
	{
		name: "comment not closed",
		script: `{
  id: 'm', initial: 'a', /* states come later
  states: { a: {} }
}`,
		at:  "/*",
		msg: []string{"comment", "*/"},
	},
	{
		name:   "not an object",
		script: `[ 'a', 'b' ]`,
		at:     "[",
		msg:    []string{"object", "states"},
	},
}

// xsnLineCol is the 1-based line and column where sub first appears in s.
func xsnLineCol(s, sub string) (int, int) {
	i := strings.Index(s, sub)
	if sub == "" {
		i = len(s)
	}
	if i < 0 {
		return 0, 0
	}
	line := 1 + strings.Count(s[:i], "\n")
	return line, i - strings.LastIndex(s[:i], "\n")
}

func TestXStateNetLoadErrors(t *testing.T) {
	impl := statechart.Implementations{
		Actions: map[string]statechart.Action{"ok": func(*statechart.Scope) error { return nil }},
		Guards:  map[string]statechart.Guard{"ok": func(*statechart.Scope) bool { return true }},
		Delays:  map[string]statechart.Delay{"sometimes": func(*statechart.Scope) time.Duration { return time.Second }},
	}
	for _, c := range xsnLoadErrorCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := statechart.Load([]byte(c.script), impl, statechart.WithFilename("case.json"))
			var le *statechart.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load returned %v (%T), want a *LoadError", err, err)
			}
			line, col := xsnLineCol(c.script, c.at)
			if line == 0 {
				t.Fatalf("the case's 'at' text %q is not in its script", c.at)
			}
			var errs []string
			if le.Line != line || le.Col != col {
				errs = append(errs, fmt.Sprintf("at %d:%d, want %d:%d (where %q starts)", le.Line, le.Col, line, col, c.at))
			}
			if le.Path != c.path {
				errs = append(errs, fmt.Sprintf("Path %q, want %q", le.Path, c.path))
			}
			for _, s := range c.msg {
				if !strings.Contains(le.Msg, s) {
					errs = append(errs, fmt.Sprintf("the message does not contain %q", s))
				}
			}
			want := fmt.Sprintf("case.json:%d:%d: ", line, col)
			if c.path != "" {
				want += c.path + ": "
			}
			if !strings.HasPrefix(err.Error(), want) {
				errs = append(errs, fmt.Sprintf("Error() does not start %q", want))
			}
			if len(errs) > 0 {
				t.Errorf("%s\ngot %v", strings.Join(errs, "\n"), err)
			}
		})
	}
}

// TestXStateNetCompatLoad: WithCompat(XStateNet) loads a script whose guard
// nobody registered; the default mode refuses it.
func TestXStateNetCompatLoad(t *testing.T) {
	script := []byte(`{ id: 'm', initial: 'a', states: { a: { on: { GO: { target: 'b', cond: 'unregistered' } } }, b: {} } }`)
	if _, err := statechart.Load(script, statechart.Implementations{}); err == nil {
		t.Error("default mode loaded a script with an unregistered guard")
	}
	if _, err := statechart.Load(script, statechart.Implementations{}, statechart.WithCompat(statechart.XStateNet)); err != nil {
		t.Errorf("XStateNet mode: %v", err)
	}
}
