package statechart_test

import (
	"testing"

	"github.com/statebus/statebus/statechart"
)

// Internal transitions: actions without leaving the state.
var xsnInternalCases = []xsnCase{
	{
		name:   "target '.' is the state itself",
		origin: "test/UnitTest_InternalTransitions.cs TestBasicInternalTransition",
		note: "XStateNet reads target '.' as 'no target' (XStateNet5Impl/Parser.cs: IsInternal, TargetName = null): " +
			"no exit, no entry. Here '.' resolves to the source itself, and an internal transition to an atomic " +
			"source exits and re-enters it, as SCXML's transition domain says",
		script: `
		{
			id: 'TEST',
			initial: 'active',
			context: { counter: 0 },
			states: {
				active: {
					entry: 'entryAction',
					exit: 'exitAction',
					on: {
						INCREMENT: { target: '.', actions: 'incrementCounter' },
						EXTERNAL: 'done'
					}
				},
				done: { type: 'final' }
			}
		}`,
		record:  []string{"entryAction", "exitAction"},
		actions: map[string]statechart.Action{"incrementCounter": xsnAdd("counter", 1)},
		start:   xsnStep{state: "#TEST.active", log: []string{"entryAction"}},
		steps: []xsnStep{
			{send: "INCREMENT", state: "#TEST.active", log: []string{"exitAction", "incrementCounter", "entryAction"}},
			{send: "INCREMENT"},
			{send: "INCREMENT", ctx: map[string]any{"counter": 3}},
			{send: "EXTERNAL", state: "#TEST.done", log: []string{"exitAction"}, done: true},
		},
	},
	{
		name:   "no target, actions only",
		origin: "test/UnitTest_InternalTransitions.cs TestInternalTransitionWithNullTarget",
		script: `
		{
			id: 'machineId',
			initial: 'counting',
			states: {
				counting: {
					entry: 'entryAction',
					on: { UPDATE: { actions: 'incrementCounter' }, FINISH: 'complete' }
				},
				complete: { type: 'final' }
			}
		}`,
		ctx:     map[string]any{"counter": 0},
		record:  []string{"entryAction"},
		actions: map[string]statechart.Action{"incrementCounter": xsnAdd("counter", 1)},
		start:   xsnStep{log: []string{"entryAction"}},
		steps: []xsnStep{
			{send: "UPDATE", state: "#machineId.counting", log: []string{"incrementCounter"}, changed: yes()},
			{send: "UPDATE", state: "#machineId.counting", log: []string{"incrementCounter"}, ctx: map[string]any{"counter": 2}},
			{send: "FINISH", state: "#machineId.complete", done: true},
		},
	},
	{
		name:   "nested: only the child is re-entered",
		origin: "test/UnitTest_InternalTransitions.cs TestInternalTransitionInNestedStates",
		note:   "XStateNet runs updateValue alone (target '.' as 'no target')",
		script: `
		{
			id: 'machineId',
			initial: 'parent',
			states: {
				parent: {
					initial: 'child',
					entry: 'enterParent',
					exit: 'exitParent',
					states: {
						child: {
							entry: 'enterChild',
							exit: 'exitChild',
							on: {
								INTERNAL_UPDATE: { target: '.', actions: 'updateValue' },
								EXTERNAL_UPDATE: 'sibling'
							}
						},
						sibling: { type: 'final' }
					}
				}
			}
		}`,
		record:  []string{"enterParent", "exitParent", "enterChild", "exitChild"},
		actions: map[string]statechart.Action{"updateValue": xsnSet("value", "updated")},
		start:   xsnStep{log: []string{"enterParent", "enterChild"}},
		steps: []xsnStep{
			{send: "INTERNAL_UPDATE", state: "#machineId.parent.child",
				log: []string{"exitChild", "updateValue", "enterChild"}, ctx: map[string]any{"value": "updated"}},
			{send: "EXTERNAL_UPDATE", state: "#machineId.parent.sibling", log: []string{"exitChild"}},
		},
	},
	{
		name:   "guarded list: stay, then leave",
		origin: "test/UnitTest_InternalTransitions.cs TestInternalTransitionWithGuards",
		script: `
		{
			id: 'machineId',
			initial: 'counting',
			context: { counter: 0 },
			states: {
				counting: {
					on: {
						INCREMENT: [
							{ target: '.', cond: 'lessThanFive', actions: 'incrementCounter' },
							{ target: 'maxReached' }
						]
					}
				},
				maxReached: { entry: 'log', type: 'final' }
			}
		}`,
		record:  []string{"log"},
		actions: map[string]statechart.Action{"incrementCounter": xsnAdd("counter", 1)},
		guards:  map[string]statechart.Guard{"lessThanFive": func(s *statechart.Scope) bool { return xsnNum(s.Context["counter"]) < 5 }},
		steps: []xsnStep{
			{send: "INCREMENT", state: "#machineId.counting"},
			{send: "INCREMENT"},
			{send: "INCREMENT"},
			{send: "INCREMENT", state: "#machineId.counting", ctx: map[string]any{"counter": 4}},
			{send: "INCREMENT", state: "#machineId.counting", ctx: map[string]any{"counter": 5}},
			{send: "INCREMENT", state: "#machineId.maxReached", log: []string{"log"}, done: true},
		},
	},
	{
		name:   "targetless in parallel regions",
		origin: "test/UnitTest_InternalTransitions.cs TestInternalTransitionInParallelStates (actions only, no '.')",
		script: `
		{
			id: 'machineId',
			type: 'parallel',
			states: {
				regionA: {
					initial: 'stateA',
					states: { stateA: { entry: 'entryAction', on: { UPDATE_A: { actions: 'incrementCounter' } } } }
				},
				regionB: {
					initial: 'stateB',
					states: { stateB: { entry: 'entryAction', on: { UPDATE_B: { actions: 'updateValue' } } } }
				}
			}
		}`,
		ctx:     map[string]any{"counter": 0},
		record:  []string{"entryAction"},
		actions: map[string]statechart.Action{"incrementCounter": xsnAdd("counter", 1), "updateValue": xsnSet("value", "updated")},
		start:   xsnStep{state: "#machineId.regionA.stateA;#machineId.regionB.stateB", log: []string{"entryAction", "entryAction"}},
		steps: []xsnStep{
			{send: "UPDATE_A", log: []string{"incrementCounter"}, ctx: map[string]any{"counter": 1}},
			{send: "UPDATE_B", log: []string{"updateValue"}, ctx: map[string]any{"value": "updated"},
				state: "#machineId.regionA.stateA;#machineId.regionB.stateB"},
		},
	},
	{
		name:   "internal: true versus an external self-transition",
		origin: "XStateNet2.Tests/InternalTransitionsTests.cs InternalVsExternalTransition_Comparison; test/UnitTest_InternalTransitions.cs TestMixedInternalAndExternalTransitions",
		script: `{
			"id": "test",
			"initial": "idle",
			"context": { "internalCount": 0, "externalCount": 0 },
			"states": {
				"idle": { "on": { "START": "state" } },
				"state": {
					"entry": ["onEntry"],
					"exit": ["onExit"],
					"on": {
						"INTERNAL": { "internal": true, "actions": ["incrementInternal"] },
						"EXTERNAL": { "target": "state", "actions": ["incrementExternal"] },
						"DONE": "complete"
					}
				},
				"complete": { "type": "final" }
			}
		}`,
		record:  []string{"onEntry", "onExit"},
		actions: map[string]statechart.Action{"incrementInternal": xsnAdd("internalCount", 1), "incrementExternal": xsnAdd("externalCount", 1)},
		steps: []xsnStep{
			{send: "START", log: []string{"onEntry"}},
			{send: "INTERNAL", log: []string{"incrementInternal"}},
			{send: "INTERNAL", log: []string{"incrementInternal"}, ctx: map[string]any{"internalCount": 2, "externalCount": 0}},
			{send: "EXTERNAL", log: []string{"onExit", "incrementExternal", "onEntry"}},
			{send: "EXTERNAL", log: []string{"onExit", "incrementExternal", "onEntry"}, ctx: map[string]any{"internalCount": 2, "externalCount": 2}},
			{send: "DONE", state: "#test.complete", log: []string{"onExit"}, done: true},
		},
	},
	{
		name:   "internal: true never exits",
		origin: "XStateNet2.Tests/InternalTransitionsTests.cs InternalTransition_ShouldNotTriggerEntryExit",
		script: `{
			"id": "test",
			"initial": "active",
			"context": { "counter": 0 },
			"states": {
				"active": {
					"entry": ["onEntry"],
					"exit": ["onExit"],
					"on": {
						"INCREMENT": { "internal": true, "actions": ["incrementCounter"] },
						"TRANSITION": "inactive"
					}
				},
				"inactive": {}
			}
		}`,
		record:  []string{"onEntry", "onExit"},
		actions: map[string]statechart.Action{"incrementCounter": xsnAdd("counter", 1)},
		start:   xsnStep{log: []string{"onEntry"}},
		steps: []xsnStep{
			{send: "INCREMENT", state: "#test.active", log: []string{"incrementCounter"}, ctx: map[string]any{"counter": 1}},
			{send: "INCREMENT"},
			{send: "INCREMENT", log: []string{"incrementCounter"}, ctx: map[string]any{"counter": 3}},
			{send: "TRANSITION", state: "#test.inactive", log: []string{"onExit"}},
		},
	},
	{
		name:   "external self-transition",
		origin: "XStateNet2.Tests/InternalTransitionsTests.cs ExternalTransition_ShouldTriggerEntryExit",
		script: `{
			"id": "test",
			"initial": "active",
			"states": { "active": { "entry": ["onEntry"], "exit": ["onExit"], "on": { "SELF": "active" } } }
		}`,
		record: []string{"onEntry", "onExit"},
		steps:  []xsnStep{{send: "SELF", state: "#test.active", log: []string{"onExit", "onEntry"}}},
	},
	{
		name:   "actions in order",
		origin: "XStateNet2.Tests/InternalTransitionsTests.cs InternalTransition_MultipleActions",
		script: `{
			"id": "test",
			"initial": "active",
			"states": { "active": { "on": { "UPDATE": { "internal": true, "actions": ["action1", "action2", "action3"] } } } }
		}`,
		record: []string{"action1", "action2", "action3"},
		steps:  []xsnStep{{send: "UPDATE", log: []string{"action1", "action2", "action3"}}},
	},
	{
		name:   "guard false: nothing runs",
		origin: "XStateNet2.Tests/InternalTransitionsTests.cs InternalTransition_WithGuard",
		script: `{
			"id": "test",
			"initial": "active",
			"context": { "allowed": false },
			"states": {
				"active": {
					"entry": ["onEntry"],
					"on": {
						"ALLOW": { "actions": ["allow"] },
						"TRY_UPDATE": { "internal": true, "cond": "isAllowed", "actions": ["updateValue"] }
					}
				}
			}
		}`,
		record:  []string{"onEntry", "updateValue"},
		actions: map[string]statechart.Action{"allow": xsnSet("allowed", true)},
		guards:  map[string]statechart.Guard{"isAllowed": xsnIs("allowed", true)},
		start:   xsnStep{log: []string{"onEntry"}},
		steps: []xsnStep{
			{send: "TRY_UPDATE", log: none, changed: no()},
			{send: "ALLOW", log: []string{"allow"}},
			{send: "TRY_UPDATE", log: []string{"updateValue"}, changed: yes()},
		},
	},
	{
		name:   "'.child' from a compound state keeps the parent",
		origin: "test/UnitTest_MultipleTargets.cs ('.region1.state1' relative targets), on a compound parent",
		script: `{
			id: 'm',
			initial: 'parent',
			states: {
				parent: {
					entry: 'enterParent', exit: 'exitParent',
					initial: 'a',
					on: {
						RESET: '.a',
						RESTART: { target: '.a', internal: false }
					},
					states: {
						a: { entry: 'enterA', exit: 'exitA', on: { NEXT: 'b' } },
						b: { entry: 'enterB', exit: 'exitB' }
					}
				}
			}
		}`,
		record: []string{"enterParent", "exitParent", "enterA", "exitA", "enterB", "exitB"},
		start:  xsnStep{log: []string{"enterParent", "enterA"}},
		steps: []xsnStep{
			{send: "NEXT", state: "#m.parent.b", log: []string{"exitA", "enterB"}},
			{send: "RESET", state: "#m.parent.a", log: []string{"exitB", "enterA"}},
			{send: "NEXT"},
			{send: "RESTART", state: "#m.parent.a", log: []string{"exitB", "exitParent", "enterParent", "enterA"}},
		},
	},
}

func TestXStateNetInternal(t *testing.T) { runXSN(t, xsnInternalCases) }
