package orchestrator_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(child(role))
	}
	goleak.VerifyTestMain(m, bustest.IgnoreWinio)
}

// readScript reads one of the example's scripts: the tests run the same
// machines as examples/pingpong.
func readScript(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../examples/pingpong/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func num(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	case int64:
		return int(n)
	}
	return 0
}

func increment(s *statechart.Scope) error {
	s.Context["count"] = num(s.Context["count"]) + 1
	return nil
}

// pingImpl is the ping machine's implementation: it pings the machine
// named by its context's "peer" (default "pong").
var pingImpl = statechart.Implementations{
	Actions: map[string]statechart.Action{
		"incrementCount": increment,
		"sendPing": func(s *statechart.Scope) error {
			peer, _ := s.Context["peer"].(string)
			if peer == "" {
				peer = "pong"
			}
			s.Send(peer, "PING", map[string]any{"n": s.Context["count"]})
			return nil
		},
		"onDone": func(*statechart.Scope) error { return nil },
	},
	Guards: map[string]statechart.Guard{
		"isMaxReached": func(s *statechart.Scope) bool { return num(s.Context["count"]) >= num(s.Context["maxCount"]) },
	},
}

// pongImpl answers each PING with a PONG to its sender, echoing its data.
var pongImpl = statechart.Implementations{
	Actions: map[string]statechart.Action{
		"incrementCount": increment,
		"sendPong": func(s *statechart.Scope) error {
			s.Send(s.Event.Origin, "PONG", s.Event.Data)
			return nil
		},
	},
}

func load(t testing.TB, name string, impl statechart.Implementations) *statechart.Definition {
	t.Helper()
	d, err := statechart.Load(readScript(t, name), impl, statechart.WithFilename(name))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// counterScript counts NUM events that arrive in order (n = 0, 1, 2, ...)
// and echoes each to its sender; one out of order breaks it for good.
const counterScript = `{
  id: 'counter',
  initial: 'counting',
  context: { next: 0 },
  states: {
    counting: {
      on: {
        NUM: [
          { cond: 'inOrder', actions: ['advance', 'echo'] },
          { target: 'broken' },
        ],
      },
    },
    broken: {},
  },
}`

// counterImpl implements counterScript; echo echoes only when the
// context's "echo" is true.
var counterImpl = statechart.Implementations{
	Actions: map[string]statechart.Action{
		"advance": func(s *statechart.Scope) error {
			s.Context["next"] = num(s.Context["next"]) + 1
			return nil
		},
		"echo": func(s *statechart.Scope) error {
			if s.Context["echo"] == true {
				s.Send(s.Event.Origin, "NUM", s.Event.Data)
			}
			return nil
		},
	},
	Guards: map[string]statechart.Guard{
		"inOrder": func(s *statechart.Scope) bool {
			var d struct{ N int }
			return jsonInto(s.Event.Data, &d) == nil && d.N == num(s.Context["next"])
		},
	},
}

func loadCounter(t testing.TB) *statechart.Definition {
	t.Helper()
	d, err := statechart.Load([]byte(counterScript), counterImpl)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newOrch returns an orchestrator closed when the test ends.
func newOrch(t testing.TB, opts ...orchestrator.Option) *orchestrator.Orchestrator {
	o := orchestrator.New(opts...)
	t.Cleanup(func() { o.Close() })
	return o
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{d}, args...)...)
		}
		time.Sleep(wait)
	}
}

// registryState returns id's State in the service's registry.
func registryState(t testing.TB, pipe, id string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := statebus.Machines(ctx, statebus.WithPipeName(pipe))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.MachineID == id {
			return m.State, true
		}
	}
	return "", false
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var _ = fmt.Sprint
