package statechart_test

import (
	"strings"
	"testing"

	"github.com/statebus/statebus/statechart"
)

// Parallel states: nested regions, events to every region, done events.
var xsnParallelCases = []xsnCase{
	{
		name:   "nested regions start together",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Create_Nested_Parallel_Regions, Should_Return_Combined_State_For_Parallel_Regions",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": {
				"regionA": { "initial": "a1", "states": { "a1": {}, "a2": {} } },
				"regionB": {
					"type": "parallel",
					"states": {
						"b1": { "initial": "b1_1", "states": { "b1_1": {}, "b1_2": {} } },
						"b2": { "initial": "b2_1", "states": { "b2_1": {}, "b2_2": {} } }
					}
				}
			}
		}`,
		start: xsnStep{state: "#test.regionA.a1;#test.regionB.b1.b1_1;#test.regionB.b2.b2_1"},
	},
	{
		name:   "an event reaches a nested region",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Forward_Events_To_Nested_Parallel_Children",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": {
				"outer": {
					"type": "parallel",
					"states": {
						"inner1": { "initial": "idle", "states": { "idle": { "on": { "TEST_EVENT": "active" } }, "active": { "entry": ["recordEvent"] } } },
						"inner2": { "initial": "waiting", "states": { "waiting": {} } }
					}
				}
			}
		}`,
		record: []string{"recordEvent"},
		steps: []xsnStep{
			{send: "TEST_EVENT", state: "#test.outer.inner1.active;#test.outer.inner2.waiting", log: []string{"recordEvent"}},
		},
	},
	{
		name:   "regions move independently",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Handle_Concurrent_Robot_Operations, Should_Track_Nested_Parallel_State_Changes",
		script: `{
			"id": "robot",
			"type": "parallel",
			"states": {
				"position": { "initial": "a", "states": { "a": { "on": { "POS_MOVE": "b" } }, "b": { "entry": ["positionChanged"] } } },
				"hand": { "initial": "x", "states": { "x": { "on": { "HAND_PICK": "y" } }, "y": { "entry": ["handChanged"] } } }
			}
		}`,
		record: []string{"positionChanged", "handChanged"},
		steps: []xsnStep{
			{send: "POS_MOVE", state: "#robot.position.b;#robot.hand.x", log: []string{"positionChanged"}},
			{send: "HAND_PICK", state: "#robot.position.b;#robot.hand.y", log: []string{"handChanged"}},
		},
	},
	{
		name:   "a null transition in the child blocks the parent's",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Support_Null_Transitions_In_Nested_Parallel",
		note:   "the C# script's parent target 'parentHandler' names no sibling of outer; XStateNet2 accepts it, the loader does not, so it is '.child1.parentHandler' here",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": {
				"outer": {
					"type": "parallel",
					"on": { "SHARED_EVENT": ".child1.parentHandler", "OTHER": ".child1.parentHandler" },
					"states": {
						"child1": {
							"initial": "idle",
							"states": {
								"idle": { "on": { "SHARED_EVENT": null } },
								"parentHandler": { "entry": ["parentHandlerFired"] }
							}
						}
					}
				}
			}
		}`,
		record: []string{"parentHandlerFired"},
		steps: []xsnStep{
			{send: "SHARED_EVENT", state: "#test.outer.child1.idle", log: none},
			{send: "OTHER", state: "#test.outer.child1.parentHandler", log: []string{"parentHandlerFired"}},
		},
	},
	{
		name:   "the child's transition wins over the parent's",
		origin: "XStateNet5Impl/State_Normal.cs BuildTransitionList (parent first, then children) with StateMachine.cs Transit (runs every listed transition)",
		note:   "XStateNet runs the parent's transition and then the child's for one event",
		script: `{
			id: 'm',
			initial: 'P',
			states: {
				P: {
					initial: 'c',
					on: { E: { target: 'X', actions: 'parentAction' } },
					states: { c: { on: { E: { target: 'd', actions: 'childAction' } } }, d: {} }
				},
				X: {}
			}
		}`,
		record: []string{"parentAction", "childAction"},
		steps: []xsnStep{
			{send: "E", state: "#m.P.d", log: []string{"childAction"}},
			{send: "E", state: "#m.X", log: []string{"parentAction"}},
		},
	},
	{
		name:   "three levels deep",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Handle_Three_Levels_Of_Nested_Parallel",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": {
				"level1A": {
					"type": "parallel",
					"states": {
						"level2A": {
							"type": "parallel",
							"states": {
								"level3A": {
									"initial": "deep",
									"states": { "deep": { "on": { "DEEP_EVENT": "deeper" } }, "deeper": { "entry": ["deepActionFired"] } }
								}
							}
						}
					}
				}
			}
		}`,
		record: []string{"deepActionFired"},
		steps:  []xsnStep{{send: "DEEP_EVENT", state: "#test.level1A.level2A.level3A.deeper", log: []string{"deepActionFired"}}},
	},
	{
		name:   "an unknown event changes nothing",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Handle_Invalid_Events_In_Nested_Parallel",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": { "region": { "type": "parallel", "states": { "subregion": { "initial": "idle", "states": { "idle": {} } } } } }
		}`,
		steps: []xsnStep{{send: "INVALID_EVENT", state: "#test.region.subregion.idle", changed: no()}},
	},
	{
		name:   "guard key in a nested region",
		origin: "XStateNet2.Tests/NestedParallelRegionsTests.cs Should_Support_Guard_Property_In_Nested_Parallel",
		script: `{
			"id": "test",
			"type": "parallel",
			"states": {
				"region": {
					"type": "parallel",
					"states": {
						"subregion": {
							"initial": "waiting",
							"states": {
								"waiting": { "on": { "CHECK": { "target": "passed", "guard": "testGuard" } } },
								"passed": { "entry": ["guardPassed"] }
							}
						}
					}
				}
			}
		}`,
		record: []string{"guardPassed"},
		guards: map[string]statechart.Guard{"testGuard": xsnConst(true)},
		steps:  []xsnStep{{send: "CHECK", state: "#test.region.subregion.passed", log: []string{"guardPassed"}}},
	},
	{
		name:   "onDone when every region is final",
		origin: "XStateNet2.Tests/FinalStatesTests.cs ParentFinalState_AllChildrenMustBeFinal",
		script: xsnParallelDone,
		record: []string{"onComplete"},
		start:  xsnStep{state: "#test.parent.region1.r1_active;#test.parent.region2.r2_active"},
		steps: []xsnStep{
			{send: "R1_FINISH", state: "#test.parent.region1.r1_done;#test.parent.region2.r2_active", log: none},
			{send: "R2_FINISH", state: "#test.complete", log: []string{"onComplete"}},
		},
	},
	{
		name:   "onDone when a compound state's final child is entered",
		origin: "XStateNet2.Tests/FinalStatesTests.cs NestedFinalState_TriggersParentOnDone",
		note:   "XStateNet fires onDone only for parallel states (XStateNet5Impl/State_Normal.cs OnDone); see the compat case",
		script: xsnCompoundDone,
		record: []string{"onComplete"},
		start:  xsnStep{state: "#test.parent.child"},
		steps:  []xsnStep{{send: "FINISH", state: "#test.complete", log: []string{"onComplete"}}},
	},
	{
		name:   "a top-level final state ends the machine",
		origin: "XStateNet2.Tests/FinalStatesTests.cs FinalState_CanHaveExplicitTransitions, FinalState_RemainsInFinalStateAfterMultipleEvents",
		note:   "XStateNet2 keeps running in a top-level final state and takes its RESTART transition",
		script: `{
			"id": "test",
			"initial": "active",
			"context": { "count": 0 },
			"states": {
				"active": { "on": { "FINISH": "done" } },
				"done": { "type": "final", "entry": ["onDone"], "on": { "RESTART": { "target": "active", "actions": ["increment"] } } }
			}
		}`,
		record:  []string{"onDone"},
		actions: map[string]statechart.Action{"increment": xsnAdd("count", 1)},
		steps: []xsnStep{
			{send: "FINISH", state: "#test.done", log: []string{"onDone"}, done: true},
			{send: "RESTART", err: statechart.ErrDone, state: "#test.done", log: none, ctx: map[string]any{"count": 0}},
			{send: "RANDOM_EVENT_1", err: statechart.ErrDone, state: "#test.done"},
		},
	},
	{
		name:   "parallel onDone leaves for a sibling",
		origin: "SemiStandard/XStateScripts/E94ControlJobStates.json executing (parallel, onDone: completed)",
		script: `{
			id: 'job',
			initial: 'executing',
			states: {
				executing: {
					type: 'parallel',
					onDone: { target: 'completed', actions: 'jobDone' },
					on: { ABORT: 'aborting' },
					states: {
						processing: {
							initial: 'active',
							states: { active: { on: { PROCESS_COMPLETE: 'completed', STOP: 'stopped' } }, completed: { type: 'final' }, stopped: { type: 'final' } }
						},
						materialFlow: {
							initial: 'waiting',
							states: { waiting: { on: { MATERIAL_PROCESSED: 'materialComplete' } }, materialComplete: { type: 'final' } }
						}
					}
				},
				aborting: {},
				completed: { on: { DELETE: 'noJob' } },
				noJob: {}
			}
		}`,
		record: []string{"jobDone"},
		steps: []xsnStep{
			{send: "PROCESS_COMPLETE", state: "#job.executing.processing.completed;#job.executing.materialFlow.waiting", log: none},
			{send: "MATERIAL_PROCESSED", state: "#job.completed", log: []string{"jobDone"}},
			{send: "DELETE", state: "#job.noJob"},
		},
	},
}

const xsnParallelDone = `{
	"id": "test",
	"initial": "parent",
	"states": {
		"parent": {
			"type": "parallel",
			"states": {
				"region1": { "initial": "r1_active", "states": { "r1_active": { "on": { "R1_FINISH": "r1_done" } }, "r1_done": { "type": "final" } } },
				"region2": { "initial": "r2_active", "states": { "r2_active": { "on": { "R2_FINISH": "r2_done" } }, "r2_done": { "type": "final" } } }
			},
			"onDone": { "target": "complete" }
		},
		"complete": { "entry": ["onComplete"] }
	}
}`

const xsnCompoundDone = `{
	"id": "test",
	"initial": "parent",
	"states": {
		"parent": {
			"initial": "child",
			"states": { "child": { "on": { "FINISH": "child_done" } }, "child_done": { "type": "final" } },
			"onDone": { "target": "complete" }
		},
		"complete": { "entry": ["onComplete"] }
	}
}`

func TestXStateNetParallel(t *testing.T) { runXSN(t, xsnParallelCases) }

// The same scripts under WithCompat(XStateNet), for the deviations the
// compatibility mode implements.
var xsnCompatCases = []xsnCase{
	{
		name:   "onDone does not fire for a compound state",
		origin: "XStateNet2.Tests/FinalStatesTests.cs NestedFinalState_TriggersParentOnDone (\"onDone automatic transition may not be implemented yet\")",
		compat: true,
		script: xsnCompoundDone,
		record: []string{"onComplete"},
		steps:  []xsnStep{{send: "FINISH", state: "#test.parent.child_done", log: none}},
	},
	{
		name:   "onDone still fires for a parallel state",
		origin: "XStateNet2.Tests/FinalStatesTests.cs ParentFinalState_AllChildrenMustBeFinal; XStateNet5Impl/State_Parallel.cs OnDone",
		compat: true,
		script: xsnParallelDone,
		record: []string{"onComplete"},
		steps: []xsnStep{
			{send: "R1_FINISH", state: "#test.parent.region1.r1_done;#test.parent.region2.r2_active", log: none},
			{send: "R2_FINISH", state: "#test.complete", log: []string{"onComplete"}},
		},
	},
	{
		name:   "history restores on any entry of the parent",
		origin: "XStateNet2.Tests/HistoryStateTests.cs HistoryState_WorksWithParallelStates; XStateNet5Impl/State_Normal.cs EntryState",
		compat: true,
		script: xsnParallelHistory("'A'"),
		steps: []xsnStep{
			{send: "TO_R1_S2"},
			{send: "TO_R2_S2"},
			{send: "TO_B", state: "#testMachine.B"},
			{send: "TO_A", state: "#testMachine.A.region1.R1_S2;#testMachine.A.region2.R2_S2"},
		},
	},
	{
		name:   "history restores a compound state entered by name",
		origin: "test/UnitTest_HistoryState.cs ShallowHistory, entering A instead of A.hist; XStateNet5Impl/State_Normal.cs EntryState",
		compat: true,
		script: `{
			id: 'm',
			initial: 'A',
			states: {
				A: {
					initial: 'A1',
					states: { A1: { on: { TO_A2: 'A2' } }, A2: {}, hist: { type: 'history' } },
					on: { TO_B: 'B' }
				},
				B: { on: { TO_A: 'A' } }
			}
		}`,
		steps: []xsnStep{
			{send: "TO_A2"},
			{send: "TO_B", state: "#m.B"},
			{send: "TO_A", state: "#m.A.A2"},
		},
	},
	{
		name:   "initial on a parallel state is ignored",
		origin: "test/UnitTest_InCondition.cs TestInConditionWithParallelStateMet, with its 'initial': 'parallelState'",
		compat: true,
		script: strings.Replace(xsnInScript("'#inConditionMachine.stateA.subStateA2'"), "'type' : 'parallel',", "'initial': 'parallelState',\n\t\t'type' : 'parallel',", 1),
		start:  xsnStep{state: "#inConditionMachine.stateA.subStateA1;#inConditionMachine.stateB.subStateB1"},
		steps: []xsnStep{
			{send: "EVENT1"},
			{send: "EVENT2"},
			{send: "CHECK_IN_CONDITION", state: "#inConditionMachine.stateA.subStateA2;#inConditionMachine.stateB.finalState"},
		},
	},
	{
		name:   "a history key on a compound state restores on entry",
		origin: "XStateNet5Impl/Parser.cs (a compound state's history key makes a history child) with State_Normal.cs EntryState",
		compat: true,
		script: `{
			id: 'm',
			initial: 'A',
			states: {
				A: {
					history: 'deep',
					initial: 'A1',
					states: { A1: { initial: 'x', states: { x: { on: { N: 'y' } }, y: {} } }, A2: {} },
					on: { B: 'B' }
				},
				B: { on: { A: 'A' } }
			}
		}`,
		start: xsnStep{state: "#m.A.A1.x"},
		steps: []xsnStep{
			{send: "N", state: "#m.A.A1.y"},
			{send: "B", state: "#m.B"},
			{send: "A", state: "#m.A.A1.y"},
		},
	},
	{
		name:   "an unregistered guard counts as true",
		origin: "XStateNet5Impl/Parser.cs GetGuardCallback (returns null, and a null guard passes); test/UnitTest_TrafficLight.cs registers no inRedLight-style guards it does not use",
		compat: true,
		script: `{
			id: 'gate',
			initial: 'closed',
			states: {
				closed: { on: { OPEN: { target: 'open', cond: 'nobodyRegisteredMe' } } },
				open: {}
			}
		}`,
		steps: []xsnStep{{send: "OPEN", state: "#gate.open", changed: yes()}},
	},
	{
		name:   "a registered guard still decides",
		origin: "test/UnitTest_TrafficLight.cs TestGuardCondition, in compat mode",
		compat: true,
		script: `{
			id: 'gate',
			initial: 'closed',
			states: {
				closed: { on: { OPEN: { target: 'open', cond: 'isReady' } } },
				open: {}
			}
		}`,
		guards: map[string]statechart.Guard{"isReady": xsnConst(false)},
		steps:  []xsnStep{{send: "OPEN", state: "#gate.closed", changed: no()}},
	},
}

func TestXStateNetCompat(t *testing.T) { runXSN(t, xsnCompatCases) }
