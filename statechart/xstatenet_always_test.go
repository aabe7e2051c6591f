package statechart_test

import (
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

// Eventless transitions: always, and the v4 "" key in on.
var xsnAlwaysCases = []xsnCase{
	{
		name:   "threshold both ways",
		origin: "test/UnitTest_Always.cs TestAlwaysTransition",
		script: `{
			'id': 'counter',
			'initial': 'small',
			'context': { 'count': 0 },
			'states': {
				'small': { 'always': { 'target': 'big', 'guard': 'isBig' } },
				'big': { 'always': { 'target': 'small', 'guard': 'isSmall' } }
			},
			'on': {
				'INCREMENT': { 'actions': ['inc', 'check'] },
				'DECREMENT': { 'actions': ['dec', 'check'] }
			}
		}`,
		record:  []string{"check"},
		actions: map[string]statechart.Action{"inc": xsnAdd("count", 1), "dec": xsnAdd("count", -1)},
		guards:  map[string]statechart.Guard{"isBig": xsnAbove("count", 3), "isSmall": xsnAtMost("count", 3)},
		start:   xsnStep{state: "#counter.small", log: none},
		steps: []xsnStep{
			{send: "INCREMENT", state: "#counter.small", log: []string{"inc", "check"}},
			{send: "INCREMENT", state: "#counter.small"},
			{send: "INCREMENT", state: "#counter.small", ctx: map[string]any{"count": 3}},
			{send: "INCREMENT", state: "#counter.big", ctx: map[string]any{"count": 4}},
			{send: "DECREMENT", state: "#counter.small", ctx: map[string]any{"count": 3}},
		},
	},
	{
		name:   "fires on start",
		origin: "test/UnitTest_Always.cs TestAlwaysTransition_AutomaticFiring",
		script: `{
			'id': 'autoAlways',
			'initial': 'init',
			'context': { 'ready': false },
			'states': {
				'init': { 'always': { 'target': 'ready', 'guard': 'isReady' } },
				'ready': { 'type': 'final' }
			}
		}`,
		ctx:    map[string]any{"ready": true},
		guards: map[string]statechart.Guard{"isReady": xsnIs("ready", true)},
		start:  xsnStep{state: "#autoAlways.ready", done: true},
	},
	{
		name:   "guard false on start stays",
		origin: "test/UnitTest_Always.cs TestAlwaysTransition_AutomaticFiring (guard false)",
		script: `{
			'id': 'autoAlways',
			'initial': 'init',
			'context': { 'ready': false },
			'states': {
				'init': { 'always': { 'target': 'ready', 'guard': 'isReady' } },
				'ready': { 'type': 'final' }
			}
		}`,
		guards: map[string]statechart.Guard{"isReady": xsnIs("ready", true)},
		start:  xsnStep{state: "#autoAlways.init"},
	},
	{
		name:   "empty event key",
		origin: "test/UnitTest_Always.cs TestAlwaysTransition_EmptyStringEvent",
		script: `{
			'id': 'emptyEvent',
			'initial': 'waiting',
			'context': { 'count': 0 },
			'states': {
				'waiting': {
					'on': {
						'': { 'target': 'done', 'guard': 'countIsThree' },
						'INCREMENT': { 'actions': ['increment'] }
					}
				},
				'done': { 'type': 'final' }
			}
		}`,
		actions: map[string]statechart.Action{"increment": xsnAdd("count", 1)},
		guards: map[string]statechart.Guard{"countIsThree": func(s *statechart.Scope) bool {
			return xsnNum(s.Context["count"]) == 3
		}},
		start: xsnStep{state: "#emptyEvent.waiting"},
		steps: []xsnStep{
			{send: "INCREMENT", state: "#emptyEvent.waiting"},
			{send: "INCREMENT", state: "#emptyEvent.waiting"},
			{send: "INCREMENT", state: "#emptyEvent.done", done: true},
		},
	},
	{
		name:   "first matching candidate",
		origin: "test/UnitTest_Always.cs TestAlwaysTransition_MultipleCandidates",
		script: xsnMultiAlways,
		ctx:    map[string]any{"value": 15},
		guards: map[string]statechart.Guard{"isHigh": xsnAbove("value", 10), "isMedium": xsnAbove("value", 5)},
		start:  xsnStep{state: "#multiAlways.high", done: true},
	},
	{
		name:   "second candidate",
		origin: "test/UnitTest_Always.cs TestAlwaysTransition_MultipleCandidates (value 7)",
		script: xsnMultiAlways,
		ctx:    map[string]any{"value": 7},
		guards: map[string]statechart.Guard{"isHigh": xsnAbove("value", 10), "isMedium": xsnAbove("value", 5)},
		start:  xsnStep{state: "#multiAlways.medium", done: true},
	},
	{
		name:   "unguarded fallback",
		origin: "XStateNet2.Tests/AlwaysTransitionsTests.cs AlwaysTransition_FallbackTarget_ShouldWork",
		script: `{
			"id": "test",
			"initial": "checking",
			"context": { "value": 3 },
			"states": {
				"checking": { "always": [ { "target": "high", "cond": "isHigh" }, { "target": "low" } ] },
				"high": { "entry": ["onHigh"], "type": "final" },
				"low": { "entry": ["onLow"], "type": "final" }
			}
		}`,
		record: []string{"onHigh", "onLow"},
		guards: map[string]statechart.Guard{"isHigh": xsnAbove("value", 5)},
		start:  xsnStep{state: "#test.low", log: []string{"onLow"}, done: true},
	},
	{
		name:   "string form without guard",
		origin: "XStateNet2.Tests/AlwaysTransitionsTests.cs AlwaysTransition_NoGuard_ShouldAlwaysFire; test/UnitTest_Always.cs TestAlwaysTransition_NoGuard",
		script: `{
			"id": "test",
			"initial": "start",
			"states": {
				"start": { "always": "end" },
				"end": { "entry": ["onEnd"], "type": "final" }
			}
		}`,
		record: []string{"onEnd"},
		start:  xsnStep{state: "#test.end", log: []string{"onEnd"}, done: true},
	},
	{
		name:   "actions between exit and entry",
		origin: "test/UnitTest_Always.cs TestAlwaysTransition_WithActions; XStateNet2.Tests/AlwaysTransitionsTests.cs AlwaysTransition_WithActions_ShouldExecute",
		script: `{
			'id': 'withActions',
			'initial': 'start',
			'context': { 'actionExecuted': false, 'shouldProceed': true },
			'states': {
				'start': {
					'exit': 'leaveStart',
					'always': { 'target': 'end', 'cond': 'canProceed', 'actions': ['markExecuted'] }
				},
				'end': { 'entry': 'enterEnd', 'type': 'final' }
			}
		}`,
		record:  []string{"leaveStart", "enterEnd"},
		actions: map[string]statechart.Action{"markExecuted": xsnSet("actionExecuted", true)},
		guards:  map[string]statechart.Guard{"canProceed": xsnIs("shouldProceed", true)},
		start: xsnStep{state: "#withActions.end", done: true,
			log: []string{"leaveStart", "markExecuted", "enterEnd"}, ctx: map[string]any{"actionExecuted": true}},
	},
	{
		name:   "re-evaluated after a targetless transition",
		origin: "XStateNet2.Tests/AlwaysTransitionsTests.cs AlwaysTransition_DynamicCondition_ShouldReEvaluate",
		note:   "the C# test leaves the outcome open; SCXML re-checks eventless transitions after every macrostep",
		script: `{
			"id": "test",
			"initial": "counter",
			"context": { "count": 0 },
			"states": {
				"counter": {
					"always": { "target": "done", "cond": "isComplete" },
					"on": { "INCREMENT": { "actions": ["increment"] } }
				},
				"done": { "entry": ["onDone"], "type": "final" }
			}
		}`,
		record:  []string{"onDone"},
		actions: map[string]statechart.Action{"increment": xsnAdd("count", 1)},
		guards:  map[string]statechart.Guard{"isComplete": func(s *statechart.Scope) bool { return xsnNum(s.Context["count"]) >= 3 }},
		start:   xsnStep{state: "#test.counter", ctx: map[string]any{"count": 0}},
		steps: []xsnStep{
			{send: "INCREMENT", state: "#test.counter", ctx: map[string]any{"count": 1}},
			{send: "INCREMENT", state: "#test.counter", ctx: map[string]any{"count": 2}},
			{send: "INCREMENT", state: "#test.done", log: []string{"increment", "onDone"}, done: true},
		},
	},
	{
		name:   "first match of three",
		origin: "XStateNet2.Tests/AlwaysTransitionsTests.cs AlwaysTransition_MultipleConditions_ShouldTakeFirstMatch",
		script: `{
			"id": "test",
			"initial": "router",
			"context": { "priority": "medium" },
			"states": {
				"router": {
					"always": [
						{ "target": "urgent", "cond": "isUrgent" },
						{ "target": "high", "cond": "isHigh" },
						{ "target": "normal" }
					]
				},
				"urgent": { "entry": ["onUrgent"], "type": "final" },
				"high": { "entry": ["onHigh"], "type": "final" },
				"normal": { "entry": ["onNormal"], "type": "final" }
			}
		}`,
		record: []string{"onUrgent", "onHigh", "onNormal"},
		guards: map[string]statechart.Guard{"isUrgent": xsnIs("priority", "urgent"), "isHigh": xsnIs("priority", "high")},
		start:  xsnStep{state: "#test.normal", log: []string{"onNormal"}},
	},
	{
		name:   "in a nested state",
		origin: "XStateNet2.Tests/AlwaysTransitionsTests.cs AlwaysTransition_InNestedState_ShouldWork",
		script: `{
			"id": "test",
			"initial": "parent",
			"states": {
				"parent": {
					"initial": "child",
					"states": {
						"child": { "always": { "target": "sibling", "cond": "shouldMove" } },
						"sibling": { "entry": ["onSibling"], "type": "final" }
					}
				}
			}
		}`,
		record: []string{"onSibling"},
		guards: map[string]statechart.Guard{"shouldMove": xsnConst(true)},
		start:  xsnStep{state: "#test.parent.sibling", log: []string{"onSibling"}},
	},
}

const xsnMultiAlways = `{
	'id': 'multiAlways',
	'initial': 'start',
	'context': { 'value': 0 },
	'states': {
		'start': {
			'always': [
				{ 'target': 'high', 'guard': 'isHigh' },
				{ 'target': 'medium', 'guard': 'isMedium' },
				{ 'target': 'low' }
			]
		},
		'high': { 'type': 'final' },
		'medium': { 'type': 'final' },
		'low': { 'type': 'final' }
	}
}`

func TestXStateNetAlways(t *testing.T) { runXSN(t, xsnAlwaysCases) }

// TestXStateNetAlwaysLoop: two states that always go to each other. XStateNet
// stops after 10 rounds and carries on (StateMachine.CheckAlwaysTransitions,
// maxIterations 10; test/UnitTest_Always.cs TestAlwaysTransition_LoopProtection
// only asserts the counter stayed under 15). SCXML would loop for ever; the
// runtime must end the macrostep with an error instead of hanging.
func TestXStateNetAlwaysLoop(t *testing.T) {
	entries := 0
	def, err := statechart.Load([]byte(`{
		'id': 'loopTest',
		'initial': 'a',
		'states': {
			'a': { 'entry': ['incrementCounter'], 'always': { 'target': 'b' } },
			'b': { 'entry': ['incrementCounter'], 'always': { 'target': 'a' } }
		}
	}`), statechart.Implementations{Actions: map[string]statechart.Action{
		"incrementCounter": func(*statechart.Scope) error { entries++; return nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := def.New(statechart.WithClock(statechart.NewManualClock(xsnStart)))
	defer m.Stop()
	done := make(chan error, 1)
	go func() { done <- m.Start() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Start of an always-loop did not return within 30 s")
	}
	if err == nil {
		t.Fatalf("Start of an always-loop returned no error (entries: %d, state %s)", entries, m.State())
	}
	if !strings.Contains(err.Error(), "always") && !strings.Contains(err.Error(), "loop") && !strings.Contains(err.Error(), "microstep") {
		t.Errorf("the error does not say what loops: %v", err)
	}
	t.Logf("entries before the stop: %d; error: %v", entries, err)
}

// Delayed transitions (after), on a manual clock.
var xsnAfterCases = []xsnCase{
	{
		name:   "after 500 in order",
		origin: "test/UnitTest_AfterProp.cs TestAfterTransition",
		script: `{
			'id': 'trafficLight',
			'context': { 'isReady': true, 'log': '' },
			'states': {
				'red': {
					'entry': 'logEntryRed',
					'exit': 'logExitRed',
					'after': { '500': { 'target': 'green', 'actions': 'logTransitionAfterRedToGreen' } }
				},
				'green': { 'entry': 'logEntryGreen', 'exit': [] }
			},
			'initial': 'red'
		}`,
		record: []string{"logEntryRed", "logExitRed", "logTransitionAfterRedToGreen", "logEntryGreen"},
		start:  xsnStep{state: "#trafficLight.red", log: []string{"logEntryRed"}},
		steps: []xsnStep{
			{advance: 450 * time.Millisecond, state: "#trafficLight.red", log: none},
			{advance: 49 * time.Millisecond, state: "#trafficLight.red", log: none},
			{advance: 1 * time.Millisecond, state: "#trafficLight.green",
				log: []string{"logExitRed", "logTransitionAfterRedToGreen", "logEntryGreen"}},
		},
	},
	{
		name:   "guard false keeps the state",
		origin: "test/UnitTest_AfterProp.cs TestGuardedAfterTransition_FailsGuard",
		script: `{
			'id': 'trafficLight',
			'context': { 'isReady': false },
			'states': {
				'red': {
					'entry': 'logEntryRed',
					'exit': 'logExitRed',
					'after': { '500': { 'target': 'green', 'guard': 'isReady', 'actions': 'logTransitionAfterRedToGreen' } }
				},
				'green': { 'entry': [], 'exit': [] }
			},
			'initial': 'red'
		}`,
		record: []string{"logEntryRed", "logExitRed", "logTransitionAfterRedToGreen"},
		guards: map[string]statechart.Guard{"isReady": xsnIs("isReady", true)},
		start:  xsnStep{state: "#trafficLight.red", log: []string{"logEntryRed"}},
		steps: []xsnStep{
			{advance: 600 * time.Millisecond, state: "#trafficLight.red", log: none},
			{advance: time.Hour, state: "#trafficLight.red", log: none},
		},
	},
	{
		name:   "timer cancelled when the state exits",
		origin: "SemiStandard/XStateScripts/E87CarrierStates.json MappingVerification (VERIFY_OK before the 500 ms)",
		script: `{
			id: 'carrier',
			initial: 'MappingVerification',
			states: {
				MappingVerification: {
					on: { VERIFY_OK: 'ReadyToAccess', VERIFY_FAIL: 'Mapping' },
					after: { '500': { target: 'ReadyToAccess', actions: 'timedOut' } }
				},
				Mapping: { on: { MAPPING_COMPLETE: 'MappingVerification' } },
				ReadyToAccess: {}
			}
		}`,
		record: []string{"timedOut"},
		start:  xsnStep{state: "#carrier.MappingVerification"},
		steps: []xsnStep{
			{advance: 200 * time.Millisecond},
			{send: "VERIFY_FAIL", state: "#carrier.Mapping"},
			{advance: time.Second, state: "#carrier.Mapping", log: none},
			// Re-entering starts a new 500 ms timer.
			{send: "MAPPING_COMPLETE", state: "#carrier.MappingVerification"},
			{advance: 499 * time.Millisecond, state: "#carrier.MappingVerification", log: none},
			{advance: time.Millisecond, state: "#carrier.ReadyToAccess", log: []string{"timedOut"}},
		},
	},
	{
		name:   "in a nested parallel state",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Fire_Delayed_Transitions_In_Nested_Parallel_States",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": {
				"outer": {
					"type": "parallel",
					"states": {
						"inner": {
							"initial": "waiting",
							"states": {
								"waiting": { "after": { "200": "done" } },
								"done": { "entry": ["delayFired"] }
							}
						}
					}
				}
			}
		}`,
		record: []string{"delayFired"},
		start:  xsnStep{state: "#test.outer.inner.waiting"},
		steps: []xsnStep{
			{advance: 200 * time.Millisecond, state: "#test.outer.inner.done", log: []string{"delayFired"}},
		},
	},
	{
		name:   "guarded list, first match",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Handle_Guarded_Delayed_Transitions_In_Nested_Parallel",
		note:   "XStateNet (XStateNet5Impl/Parser.cs) keeps one after transition per state, the last parsed, so it would take failure",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": {
				"outer": {
					"type": "parallel",
					"states": {
						"inner": {
							"initial": "processing",
							"states": {
								"processing": {
									"after": {
										"100": [
											{ "target": "success", "guard": "alwaysTrue", "actions": ["successAction"] },
											{ "target": "failure", "actions": ["failureAction"] }
										]
									}
								},
								"success": {},
								"failure": {}
							}
						}
					}
				}
			}
		}`,
		record: []string{"successAction", "failureAction"},
		guards: map[string]statechart.Guard{"alwaysTrue": xsnConst(true)},
		steps: []xsnStep{
			{advance: 100 * time.Millisecond, state: "#test.outer.inner.success", log: []string{"successAction"}},
		},
	},
	{
		name:   "robot position and hand",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Handle_Robot_With_Parallel_Position_And_Hand",
		script: `{
			"id": "robot",
			"type": "parallel",
			"states": {
				"position": {
					"initial": "home",
					"states": {
						"home": { "on": { "MOVE_TO_STATION": "moving" } },
						"moving": { "after": { "100": "station" } },
						"station": {}
					}
				},
				"hand": {
					"initial": "empty",
					"states": {
						"empty": { "on": { "PICK": "picking" } },
						"picking": { "after": { "50": "holding" } },
						"holding": { "on": { "PLACE": "placing" } },
						"placing": { "after": { "50": "empty" } }
					}
				}
			}
		}`,
		start: xsnStep{state: "#robot.position.home;#robot.hand.empty"},
		steps: []xsnStep{
			{send: "PICK", state: "#robot.position.home;#robot.hand.picking"},
			{advance: 50 * time.Millisecond, state: "#robot.position.home;#robot.hand.holding"},
			{send: "MOVE_TO_STATION", state: "#robot.position.moving;#robot.hand.holding"},
			{advance: 100 * time.Millisecond, state: "#robot.position.station;#robot.hand.holding"},
			{send: "PLACE", state: "#robot.position.station;#robot.hand.placing"},
			{advance: 50 * time.Millisecond, state: "#robot.position.station;#robot.hand.empty"},
		},
	},
	{
		name:   "named delay",
		origin: "XStateNet5Impl/Parser.cs delayCallbacks (after keyed by a registered delay name)",
		script: `{
			id: 'e30',
			initial: 'waitDelay',
			states: {
				waitDelay: { after: { commDelay: { target: 'waitCRA' } } },
				waitCRA: {}
			}
		}`,
		delays: map[string]statechart.Delay{"commDelay": func(*statechart.Scope) time.Duration { return 5 * time.Second }},
		start:  xsnStep{state: "#e30.waitDelay"},
		steps: []xsnStep{
			{advance: 4999 * time.Millisecond, state: "#e30.waitDelay"},
			{advance: time.Millisecond, state: "#e30.waitCRA"},
		},
	},
	{
		name:   "two delays on one state, the earlier wins",
		origin: "SemiStandard/XStateScripts/E30GemStates.json waitCRA (after 10000 next to an event)",
		note:   "XStateNet (XStateNet5Impl/State_Real.cs AfterTransition) keeps only the last after key, so it would reach commFail at 10 s",
		script: `{
			id: 'gem',
			initial: 'waitCRA',
			states: {
				waitCRA: {
					on: { RECEIVE_S1F13: 'waitCRFromHost' },
					after: { '3000': { target: 'retry' }, '10000': { target: 'commFail' } }
				},
				waitCRFromHost: {},
				commFail: {},
				retry: {}
			}
		}`,
		steps: []xsnStep{
			{advance: 3 * time.Second, state: "#gem.retry"},
			{advance: 10 * time.Second, state: "#gem.retry"},
		},
	},
}

func TestXStateNetAfter(t *testing.T) { runXSN(t, xsnAfterCases) }
