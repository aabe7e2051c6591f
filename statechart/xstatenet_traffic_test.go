package statechart_test

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

// The traffic light: parallel light and pedestrian regions, nested red and
// green, a guard, an in-condition, entry, exit and transition actions.
const xsnTrafficLight = `{
  id: 'trafficLight',
  type: 'parallel',
  context: { isReady: false, count: 0 },
  states: {
    light: {
      initial: 'red',
      entry: [ 'logEntryLight' ],
      exit: [ 'logExitLight' ],
      states: {
        red: {
          entry: [ 'logEntryRed' ],
          exit: [ 'logExitRed' ],
          on: {
            TIMER: { target: 'green', guard: 'isReady', actions: [ 'logTransitionRedToGreen', 'logTransitionRedToGreen2' ] },
            IMPLICIT_TARGET: 'yellow'
          },
          initial: 'bright',
          states: {
            bright: {
              entry: [ 'logEntryBrightRed' ],
              exit: [ 'logExitBrightRed' ],
              on: {
                DARKER: { target: 'dark', actions: [ 'logTransitionBrightRedToDark' ] },
                NO_TARGET: { actions: [ 'logNoTargetAction' ] }
              }
            },
            dark: {
              entry: [ 'logEntryDarkRed' ],
              exit: [ 'logExitDarkRed' ],
              on: { BRIGHTER: { target: 'bright', actions: [ 'logTransitionDarkRedToBright' ] } }
            }
          }
        },
        yellow: {
          entry: [ 'logEntryYellow' ],
          exit: [ 'logExitYellow' ],
          on: { TIMER: { target: 'red', actions: [ 'logTransitionYellowToRed' ] } }
        },
        green: {
          entry: [ 'logEntryGreen' ],
          exit: [ 'logExitGreen' ],
          on: { TIMER: { target: 'yellow', actions: [ 'logTransitionGreenToYellow' ] } },
          initial: 'bright',
          states: {
            bright: { entry: [ 'logEntryBrightGreen' ], exit: [ 'logExitBrightGreen' ] }
          }
        }
      }
    },
    pedestrian: {
      entry: [ 'logEntryPedestrian' ],
      exit: [ 'logExitPedestrian' ],
      initial: 'cannotWalk',
      states: {
        canWalk: {
          entry: [ 'logEntryCanWalk' ],
          exit: [ 'logExitCanWalk' ],
          on: { TIMER: { target: 'cannotWalk', actions: [ 'logTransitionCanWalkToCannotWalk' ] } }
        },
        cannotWalk: {
          entry: [ 'logEntryCannotWalk' ],
          exit: [ 'logExitCannotWalk' ],
          on: {
            PUSH_BUTTON: { target: 'canWalk', in: '#trafficLight.light.red', actions: [ 'logTransitionCannotWalkToCanWalk' ] }
          }
        }
      }
    }
  }
}`

// xsnTrafficActions are every action the script names. XStateNet's own test
// leaves logTransitionGreenToYellow and logTransitionCannotWalkToCanWalk
// unregistered, which XStateNet skips silently and Load refuses.
var xsnTrafficActions = []string{
	"logEntryLight", "logExitLight", "logEntryRed", "logExitRed", "logTransitionRedToGreen", "logTransitionRedToGreen2",
	"logEntryBrightRed", "logExitBrightRed", "logTransitionBrightRedToDark", "logNoTargetAction",
	"logEntryDarkRed", "logExitDarkRed", "logTransitionDarkRedToBright",
	"logEntryYellow", "logExitYellow", "logTransitionYellowToRed",
	"logEntryGreen", "logExitGreen", "logTransitionGreenToYellow", "logEntryBrightGreen", "logExitBrightGreen",
	"logEntryPedestrian", "logExitPedestrian", "logEntryCanWalk", "logExitCanWalk", "logTransitionCanWalkToCannotWalk",
	"logEntryCannotWalk", "logExitCannotWalk", "logTransitionCannotWalkToCanWalk",
}

const (
	xsnRedBright = "#trafficLight.light.red.bright"
	xsnCannot    = "#trafficLight.pedestrian.cannotWalk"
	xsnCan       = "#trafficLight.pedestrian.canWalk"
	xsnGreen     = "#trafficLight.light.green.bright"
)

func xsnTraffic(name, origin string, ready bool, steps ...xsnStep) xsnCase {
	return xsnCase{
		name:   name,
		origin: origin,
		script: xsnTrafficLight,
		ctx:    map[string]any{"isReady": ready, "count": 0},
		record: xsnTrafficActions,
		guards: map[string]statechart.Guard{"isReady": xsnIs("isReady", true)},
		start:  xsnStep{state: xsnRedBright + ";" + xsnCannot},
		steps:  steps,
	}
}

var xsnTrafficCases = []xsnCase{
	{
		name:   "initial state and entry order",
		origin: "test/UnitTest_TrafficLight.cs TestInitialState; XStateNet2.Tests/TrafficLightTests.cs TestInitialState",
		script: xsnTrafficLight,
		record: xsnTrafficActions,
		guards: map[string]statechart.Guard{"isReady": xsnIs("isReady", true)},
		start: xsnStep{state: xsnRedBright + ";" + xsnCannot,
			log: []string{"logEntryLight", "logEntryRed", "logEntryBrightRed", "logEntryPedestrian", "logEntryCannotWalk"}},
	},
	xsnTraffic("red to green: exit, transition, entry",
		"test/UnitTest_TrafficLight.cs TestTransitionRedToGreen, TestEntryAndExitActions; XStateNet2.Tests/TrafficLightTests.cs TestNestedStates",
		true,
		xsnStep{send: "TIMER", state: xsnGreen + ";" + xsnCannot, log: []string{
			"logExitBrightRed", "logExitRed", "logTransitionRedToGreen", "logTransitionRedToGreen2", "logEntryGreen", "logEntryBrightGreen"}},
	),
	xsnTraffic("guard false stays red", "test/UnitTest_TrafficLight.cs TestGuardCondition", false,
		xsnStep{send: "TIMER", state: xsnRedBright + ";" + xsnCannot, log: none, changed: no()},
	),
	xsnTraffic("pedestrian may walk while red", "test/UnitTest_TrafficLight.cs TestParallelStates", false,
		xsnStep{send: "PUSH_BUTTON", state: xsnRedBright + ";" + xsnCan,
			log: []string{"logExitCannotWalk", "logTransitionCannotWalkToCanWalk", "logEntryCanWalk"}},
	),
	xsnTraffic("pedestrian may not walk while green", "test/UnitTest_TrafficLight.cs TestParallelStates (in-condition false)", true,
		xsnStep{send: "TIMER", state: xsnGreen + ";" + xsnCannot},
		xsnStep{send: "PUSH_BUTTON", state: xsnGreen + ";" + xsnCannot, log: none, changed: no()},
	),
	xsnTraffic("unknown event", "test/UnitTest_TrafficLight.cs TestInvalidTransition", true,
		xsnStep{send: "INVALID_EVENT", state: xsnRedBright + ";" + xsnCannot, log: none, changed: no()},
	),
	xsnTraffic("targetless actions", "test/UnitTest_TrafficLight.cs TestNoTargetEvent; XStateNet2.Tests/TrafficLightTests.cs TestNoTargetAction", true,
		xsnStep{send: "NO_TARGET", state: xsnRedBright + ";" + xsnCannot, log: []string{"logNoTargetAction"}, changed: yes()},
	),
	xsnTraffic("implicit target", "test/UnitTest_TrafficLight.cs TestImplicitTargetTransition", true,
		xsnStep{send: "IMPLICIT_TARGET", state: "#trafficLight.light.yellow;" + xsnCannot,
			log: []string{"logExitBrightRed", "logExitRed", "logEntryYellow"}},
	),
	xsnTraffic("darker and brighter", "test/UnitTest_TrafficLight.cs TestNestedStates (DARKER)", true,
		xsnStep{send: "DARKER", state: "#trafficLight.light.red.dark;" + xsnCannot,
			log: []string{"logExitBrightRed", "logTransitionBrightRedToDark", "logEntryDarkRed"}},
		xsnStep{send: "BRIGHTER", state: xsnRedBright + ";" + xsnCannot,
			log: []string{"logExitDarkRed", "logTransitionDarkRedToBright", "logEntryBrightRed"}},
	),
	{
		name:   "one event moves both regions in one microstep",
		origin: "test/UnitTest_TrafficLight.cs (TIMER handled by light.red and pedestrian.canWalk together)",
		note:   "XStateNet runs the two transitions one after the other: exit, action, entry of light first, then of pedestrian (XStateNet5Impl/StateMachine.cs Transit)",
		script: xsnTrafficLight,
		ctx:    map[string]any{"isReady": true},
		record: xsnTrafficActions,
		guards: map[string]statechart.Guard{"isReady": xsnIs("isReady", true)},
		steps: []xsnStep{
			{send: "PUSH_BUTTON", state: xsnRedBright + ";" + xsnCan},
			{send: "TIMER", state: xsnGreen + ";" + xsnCannot, log: []string{
				"logExitCanWalk", "logExitBrightRed", "logExitRed",
				"logTransitionRedToGreen", "logTransitionRedToGreen2", "logTransitionCanWalkToCannotWalk",
				"logEntryGreen", "logEntryBrightGreen", "logEntryCannotWalk"}},
			{send: "TIMER", state: "#trafficLight.light.yellow;" + xsnCannot,
				log: []string{"logExitBrightGreen", "logExitGreen", "logTransitionGreenToYellow", "logEntryYellow"}},
			{send: "TIMER", state: xsnRedBright + ";" + xsnCannot,
				log: []string{"logExitYellow", "logTransitionYellowToRed", "logEntryRed", "logEntryBrightRed"}},
		},
	},
}

func TestXStateNetTrafficLight(t *testing.T) { runXSN(t, xsnTrafficCases) }

// Ping-pong inside one machine: two regions that wake each other with
// self-sent events.
var xsnPingPongCases = []xsnCase{
	{
		name:   "two regions, after and self-sends",
		origin: "test/unitTest_PingPongInAMachine.cs TestPingPongStateMachines",
		script: `
		{
			'id': 'pingPongMachine',
			'type': 'parallel',
			'states': {
				'A': {
					'initial': 'a',
					'states': {
						'a': { 'after': { '1000': { 'target': 'b', 'actions': 'sendToB' } } },
						'b': { 'on': { 'to_a': { 'target': 'a' } } }
					}
				},
				'B': {
					'initial': 'a',
					'states': {
						'a': { 'on': { 'to_b': { 'target': 'b' } } },
						'b': { 'after': { '1000': { 'target': 'a', 'actions': 'sendToA' } } }
					}
				}
			}
		}`,
		actions: map[string]statechart.Action{
			"sendToB": func(s *statechart.Scope) error { s.SendSelf("to_b", nil); return nil },
			"sendToA": func(s *statechart.Scope) error { s.SendSelf("to_a", nil); return nil },
		},
		start: xsnStep{state: "#pingPongMachine.A.a;#pingPongMachine.B.a"},
		steps: []xsnStep{
			{advance: 999 * time.Millisecond, state: "#pingPongMachine.A.a;#pingPongMachine.B.a"},
			{advance: time.Millisecond, state: "#pingPongMachine.A.b;#pingPongMachine.B.b", log: []string{"sendToB"}},
			{advance: time.Second, state: "#pingPongMachine.A.a;#pingPongMachine.B.a", log: []string{"sendToA"}},
			{advance: time.Second, state: "#pingPongMachine.A.b;#pingPongMachine.B.b", log: []string{"sendToB"}},
		},
	},
}

func TestXStateNetPingPongInAMachine(t *testing.T) { runXSN(t, xsnPingPongCases) }

// xsnBus is an in-process orchestrator for tests: machines' sends and
// self-posted events go into one FIFO mailbox, and pump delivers them.
type xsnBus struct {
	t        *testing.T
	mu       sync.Mutex
	machines map[string]*statechart.Machine
	queue    []xsnDelivery
	steps    []string // "id: from -> to on event", from Subscribe
}

type xsnDelivery struct {
	to string
	ev statechart.Event
}

func (b *xsnBus) Dispatch(from string, out statechart.Outgoing) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue = append(b.queue, xsnDelivery{out.To, out.Event})
}

func (b *xsnBus) add(def *statechart.Definition, clock statechart.Clock, impl ...statechart.Option) *statechart.Machine {
	id := def.ID()
	opts := append([]statechart.Option{statechart.WithClock(clock), statechart.WithDispatcher(b),
		statechart.WithEventQueue(func(ev statechart.Event) {
			b.mu.Lock()
			b.queue = append(b.queue, xsnDelivery{id, ev})
			b.mu.Unlock()
		})}, impl...)
	m := def.New(opts...)
	m.Subscribe(func(st statechart.Step) {
		b.mu.Lock()
		b.steps = append(b.steps, fmt.Sprintf("%s: %s -> %s on %s", id, st.From, st.To, st.Event.Name))
		b.mu.Unlock()
	})
	b.mu.Lock()
	if b.machines == nil {
		b.machines = map[string]*statechart.Machine{}
	}
	b.machines[id] = m
	b.mu.Unlock()
	b.t.Cleanup(m.Stop)
	return m
}

func (b *xsnBus) start(ms ...*statechart.Machine) {
	b.t.Helper()
	for _, m := range ms {
		if err := m.Start(); err != nil {
			b.t.Fatalf("%s: Start: %v", m.ID(), err)
		}
	}
	b.pump()
}

// pump delivers queued events until none is left.
func (b *xsnBus) pump() {
	b.t.Helper()
	for n := 0; ; n++ {
		if n > 10000 {
			b.t.Fatal("more than 10000 deliveries in one pump")
		}
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		d := b.queue[0]
		b.queue = b.queue[1:]
		m := b.machines[d.to]
		b.mu.Unlock()
		if m == nil {
			b.t.Fatalf("event %s to unknown machine %q", d.ev.Name, d.to)
		}
		if _, err := m.Send(d.ev); err != nil && !errors.Is(err, statechart.ErrDone) {
			b.t.Fatalf("%s: %s: %v", d.to, d.ev.Name, err)
		}
	}
}

func (b *xsnBus) takeSteps() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.steps
	b.steps = nil
	return s
}

// wantSteps checks the transitions the machines took since the last check.
func (b *xsnBus) wantSteps(want []string) {
	b.t.Helper()
	if got := b.takeSteps(); !reflect.DeepEqual(got, want) {
		b.t.Errorf("transitions:\n%q\nwant\n%q", got, want)
	}
}

func xsnLoadFile(t *testing.T, path string, impl statechart.Implementations) *statechart.Definition {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	def, err := statechart.Load(src, impl, statechart.WithFilename(path))
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// TestXStateNetPingPong: the ping and pong machines of XStateNet2.PingPong
// (testdata/xstatenet-ping.json, xstatenet-pong.json: the same shapes),
// exchanging events through a Dispatcher. Ping sends with a registered
// action calling Scope.Send; pong answers with an inline send action.
func TestXStateNetPingPong(t *testing.T) {
	b := &xsnBus{t: t}
	clock := statechart.NewManualClock(xsnStart)
	var pingLog []string
	ping := b.add(xsnLoadFile(t, "testdata/xstatenet-ping.json", statechart.Implementations{
		Actions: map[string]statechart.Action{
			"onIdle":         func(*statechart.Scope) error { return nil },
			"incrementCount": xsnAdd("count", 1),
			"sendPing": func(s *statechart.Scope) error {
				s.Send("pong", "PING", map[string]any{"round": s.Context["count"]})
				return nil
			},
			"onDone": func(s *statechart.Scope) error { pingLog = append(pingLog, "done"); return nil },
		},
		Guards: map[string]statechart.Guard{"isMaxReached": func(s *statechart.Scope) bool {
			return xsnNum(s.Context["count"]) >= xsnNum(s.Context["maxCount"])
		}},
	}), clock)
	pong := b.add(xsnLoadFile(t, "testdata/xstatenet-pong.json", statechart.Implementations{
		Actions: map[string]statechart.Action{
			"incrementCount": xsnAdd("count", 1),
			"saveRound":      xsnSaveData("lastPing"),
		},
	}), clock)
	b.start(ping, pong)
	if got := ping.State() + " " + pong.State(); got != "#ping.idle #pong.waiting" {
		t.Fatalf("start: %s", got)
	}
	if _, err := ping.Send(statechart.Event{Name: "START"}); err != nil {
		t.Fatal(err)
	}
	b.pump()
	if !ping.Done() || ping.State() != "#ping.done" {
		t.Errorf("ping: %s, done %v; want #ping.done", ping.State(), ping.Done())
	}
	if got := xsnNum(ping.Context()["count"]); got != 3 {
		t.Errorf("ping count %v, want 3 (maxCount)", got)
	}
	if got := xsnNum(pong.Context()["count"]); got != 3 {
		t.Errorf("pong count %v, want 3", got)
	}
	if got, want := pong.Context()["lastPing"], map[string]any{"round": 3.0}; !reflect.DeepEqual(got, want) {
		t.Errorf("pong's last PING data %v, want %v", got, want)
	}
	if !reflect.DeepEqual(pingLog, []string{"done"}) {
		t.Errorf("ping's onDone ran %q", pingLog)
	}
	want := []string{
		"ping:  -> #ping.idle on xstate.init",
		"pong:  -> #pong.waiting on xstate.init",
		"ping: #ping.idle -> #ping.pinging on START",
		"pong: #pong.waiting -> #pong.ponging on PING",
		"ping: #ping.pinging -> #ping.pinging on PONG",
		"pong: #pong.ponging -> #pong.ponging on PING",
		"ping: #ping.pinging -> #ping.pinging on PONG",
		"pong: #pong.ponging -> #pong.ponging on PING",
		"ping: #ping.pinging -> #ping.done on PONG",
	}
	b.wantSteps(want)
	if _, err := pong.Send(statechart.Event{Name: "STOP"}); err != nil {
		t.Fatal(err)
	}
	if !pong.Done() {
		t.Errorf("pong after STOP: %s, not done", pong.State())
	}
}

// TestXStateNetPingPongTimers: two machines that hand a token back and forth
// every second, each with an after timer and a send to the other.
func TestXStateNetPingPongTimers(t *testing.T) {
	// test/UnitTest_Ping_and_Pong_Machines.cs TestPingPongStateMachines
	b := &xsnBus{t: t}
	clock := statechart.NewManualClock(xsnStart)
	load := func(src string, action string, to, event string) *statechart.Definition {
		def, err := statechart.Load([]byte(src), statechart.Implementations{Actions: map[string]statechart.Action{
			action: func(s *statechart.Scope) error { s.Send(to, event, nil); return nil },
		}})
		if err != nil {
			t.Fatal(err)
		}
		return def
	}
	ping := b.add(load(`{
		'id': 'ping', 'initial': 'a',
		'states': {
			'a': { 'after': { '1000': { 'target': 'b', 'actions': 'sendToPongToB' } } },
			'b': { 'on': { 'to_a': { 'target': 'a' } } }
		}
	}`, "sendToPongToB", "pong", "to_b"), clock)
	pong := b.add(load(`{
		'id': 'pong', 'initial': 'a',
		'states': {
			'a': { 'on': { 'to_b': { 'target': 'b' } } },
			'b': { 'after': { '1000': { 'target': 'a', 'actions': 'sendToPingToA' } } }
		}
	}`, "sendToPingToA", "ping", "to_a"), clock)
	b.start(ping, pong)
	b.takeSteps()
	for i, want := range []string{"#ping.b #pong.b", "#ping.a #pong.a", "#ping.b #pong.b"} {
		clock.Advance(time.Second)
		b.pump()
		if got := ping.State() + " " + pong.State(); got != want {
			t.Errorf("after %d s: %s, want %s", i+1, got, want)
		}
	}
	want := []string{
		"ping: #ping.a -> #ping.b on xstate.after(1000)#ping.a",
		"pong: #pong.a -> #pong.b on to_b",
		"pong: #pong.b -> #pong.a on xstate.after(1000)#pong.b",
		"ping: #ping.b -> #ping.a on to_a",
		"ping: #ping.a -> #ping.b on xstate.after(1000)#ping.a",
		"pong: #pong.a -> #pong.b on to_b",
	}
	b.wantSteps(want)
}

// TestXStateNetCarrierScript drives testdata/xstatenet-carrier.json (the
// shape of E87CarrierStates.json) through its timeout, guard and targetless
// paths.
func TestXStateNetCarrierScript(t *testing.T) {
	src, err := os.ReadFile("testdata/xstatenet-carrier.json")
	if err != nil {
		t.Fatal(err)
	}
	base := xsnCase{
		script:  string(src),
		record:  []string{"closeClamp", "raiseClampAlarm", "startSlotMap", "openClamp"},
		actions: map[string]statechart.Action{"storeCarrierId": xsnSaveData("carrierId"), "countSlot": xsnAdd("slotsMapped", 1)},
		start:   xsnStep{state: "#CarrierOnLoadPort.Empty", ctx: map[string]any{"carrierId": "", "slotsMapped": 0}},
	}
	idIs := func(id string) statechart.Guard {
		return func(s *statechart.Scope) bool { return string(s.Event.Data) == `"`+id+`"` }
	}
	clampTimeout, happyPath, unknownID := base, base, base
	clampTimeout.name, clampTimeout.origin = "clamp timeout", "E87CarrierStates.json MappingVerification after 500"
	clampTimeout.guards = map[string]statechart.Guard{"idMatchesHost": idIs("C-17")}
	clampTimeout.steps = []xsnStep{
		{send: "CARRIER_PLACED", state: "#CarrierOnLoadPort.Clamping", log: []string{"closeClamp"}},
		{advance: 1999 * time.Millisecond, state: "#CarrierOnLoadPort.Clamping", log: none},
		{advance: time.Millisecond, state: "#CarrierOnLoadPort.Alarm", log: []string{"raiseClampAlarm"}},
		{send: "CLAMPED", state: "#CarrierOnLoadPort.Alarm", changed: no()},
		{send: "RESET", state: "#CarrierOnLoadPort.Empty"},
	}
	happyPath.name, happyPath.origin = "id read, slots mapped, carrier out", "E87CarrierStates.json CARRIER_DETECTED to CarrierOut"
	happyPath.guards = clampTimeout.guards
	happyPath.steps = []xsnStep{
		{send: "CARRIER_PLACED"},
		{send: "CLAMPED", state: "#CarrierOnLoadPort.ReadingId", log: none},
		{advance: time.Hour, state: "#CarrierOnLoadPort.ReadingId", log: none},
		{send: "ID_READ", data: "C-17", state: "#CarrierOnLoadPort.Mapping",
			log: []string{"storeCarrierId", "startSlotMap"}, ctx: map[string]any{"carrierId": "C-17"}},
		{send: "SLOT_MAPPED", log: []string{"countSlot"}},
		{send: "SLOT_MAPPED", state: "#CarrierOnLoadPort.Mapping", ctx: map[string]any{"slotsMapped": 2}},
		{send: "MAP_DONE", state: "#CarrierOnLoadPort.ReadyToAccess"},
		{send: "ACCESS_COMPLETE", state: "#CarrierOnLoadPort.Unclamping", log: []string{"openClamp"}},
		{send: "UNCLAMPED", state: "#CarrierOnLoadPort.Removed", done: true},
	}
	unknownID.name, unknownID.origin = "unknown id waits for the host", "E87CarrierStates.json WaitingForHost"
	unknownID.guards = clampTimeout.guards
	unknownID.steps = []xsnStep{
		{send: "CARRIER_PLACED"},
		{send: "CLAMPED"},
		{send: "ID_READ", data: "X-99", state: "#CarrierOnLoadPort.WaitingForHost", log: none, ctx: map[string]any{"carrierId": ""}},
		{send: "HOST_CANCEL", state: "#CarrierOnLoadPort.Unclamping", log: []string{"openClamp"}},
	}
	runXSN(t, []xsnCase{clampTimeout, happyPath, unknownID})
}
