package statechart_test

import (
	"testing"

	"github.com/statebus/statebus/statechart"
)

// History states, shallow and deep.
var xsnHistoryCases = []xsnCase{
	{
		name:   "shallow restores the last child",
		origin: "test/UnitTest_HistoryState.cs ShallowHistory; XStateNet2.Tests/HistoryStateTests.cs ShallowHistory_RemembersLastState",
		script: `{
			'id': 'testMachine',
			'initial': 'A',
			'states': {
				'A': {
					'initial': 'A1',
					'states': {
						'A1': { 'on': { 'TO_A2': 'A2' } },
						'A2': { 'on': { 'TO_A1': 'A1' } },
						'hist': { type : 'history', 'history':'shallow' }
					},
					'on': { 'TO_B': 'B' }
				},
				'B': { 'on': { 'TO_A': 'A.hist' } }
			}
		}`,
		start: xsnStep{state: "#testMachine.A.A1"},
		steps: []xsnStep{
			{send: "TO_A2", state: "#testMachine.A.A2"},
			{send: "TO_B", state: "#testMachine.B"},
			{send: "TO_A", state: "#testMachine.A.A2"},
			{send: "TO_A1", state: "#testMachine.A.A1"},
			{send: "TO_B", state: "#testMachine.B"},
			{send: "TO_A", state: "#testMachine.A.A1"},
		},
	},
	{
		name:   "deep restores the nested leaf, entries in order",
		origin: "test/UnitTest_HistoryState.cs DeepHistory; XStateNet2.Tests/HistoryStateTests.cs DeepHistory_RemembersNestedState",
		script: xsnDeepHistory("deep"),
		record: []string{"enterA", "enterA1", "enterA1a", "enterA1b", "exitA", "exitA1", "exitA1b"},
		start:  xsnStep{state: "#testMachine.A.A1.A1a", log: []string{"enterA", "enterA1", "enterA1a"}},
		steps: []xsnStep{
			{send: "TO_A1b", state: "#testMachine.A.A1.A1b", log: []string{"enterA1b"}},
			{send: "TO_B", state: "#testMachine.B.B1", log: []string{"exitA1b", "exitA1", "exitA"}},
			{send: "TO_A", state: "#testMachine.A.A1.A1b", log: []string{"enterA", "enterA1", "enterA1b"}},
		},
	},
	{
		name:   "shallow enters the remembered child's initial",
		origin: "test/UnitTest_HistoryState.cs DeepHistory, with history 'shallow'",
		script: xsnDeepHistory("shallow"),
		record: []string{"enterA", "enterA1", "enterA1a", "enterA1b", "exitA", "exitA1", "exitA1b"},
		steps: []xsnStep{
			{send: "TO_A1b", state: "#testMachine.A.A1.A1b"},
			{send: "TO_B", state: "#testMachine.B.B1"},
			{send: "TO_A", state: "#testMachine.A.A1.A1a", log: []string{"enterA", "enterA1", "enterA1a"}},
		},
	},
	{
		name:   "default target before any visit",
		origin: "XStateNet2.Tests/HistoryStateTests.cs HistoryState_WithDefaultTarget_UsesDefaultWhenNoHistory",
		script: `{
			"id": "testMachine",
			"initial": "B",
			"states": {
				"A": {
					"initial": "A1",
					"states": {
						"A1": { "on": { "TO_A2": "A2" } },
						"A2": {},
						"hist": { "type": "history", "history": "shallow", "target": "A2" }
					},
					"on": { "TO_B": "B" }
				},
				"B": { "on": { "TO_A": "A.hist" } }
			}
		}`,
		start: xsnStep{state: "#testMachine.B"},
		steps: []xsnStep{{send: "TO_A", state: "#testMachine.A.A2"}},
	},
	{
		name:   "no default target: the parent's initial",
		origin: "XStateNet2.Tests/HistoryStateTests.cs HistoryState_WithDefaultTarget_UsesDefaultWhenNoHistory, without target",
		script: `{
			id: 'testMachine',
			initial: 'B',
			states: {
				A: {
					initial: 'A1',
					states: { A1: {}, A2: {}, hist: { type: 'history' } }
				},
				B: { on: { TO_A: 'A.hist' } }
			}
		}`,
		steps: []xsnStep{{send: "TO_A", state: "#testMachine.A.A1"}},
	},
	{
		name:   "parallel regions entered directly start fresh",
		origin: "XStateNet2.Tests/HistoryStateTests.cs HistoryState_WorksWithParallelStates",
		note:   "XStateNet restores R1_S2 and R2_S2 here: its history applies on any entry of the parent, not only through the history state",
		script: xsnParallelHistory("'A'"),
		start:  xsnStep{state: "#testMachine.A.region1.R1_S1;#testMachine.A.region2.R2_S1"},
		steps: []xsnStep{
			{send: "TO_R1_S2"},
			{send: "TO_R2_S2", state: "#testMachine.A.region1.R1_S2;#testMachine.A.region2.R2_S2"},
			{send: "TO_B", state: "#testMachine.B"},
			{send: "TO_A", state: "#testMachine.A.region1.R1_S1;#testMachine.A.region2.R2_S1"},
		},
	},
	{
		name:   "parallel regions entered through their history states",
		origin: "XStateNet2.Tests/HistoryStateTests.cs HistoryState_WorksWithParallelStates, targeting the histories",
		script: xsnParallelHistory("['A.region1.hist', 'A.region2.hist']"),
		steps: []xsnStep{
			{send: "TO_R1_S2"},
			{send: "TO_R2_S2"},
			{send: "TO_B", state: "#testMachine.B"},
			{send: "TO_A", state: "#testMachine.A.region1.R1_S2;#testMachine.A.region2.R2_S2"},
		},
	},
	{
		name:   "deep history of a parallel state",
		origin: "XStateNet5Impl/State_History.cs (XStateNet refuses a history state under a parallel state; SCXML allows it)",
		script: `{
			id: 'testMachine',
			initial: 'A',
			states: {
				A: {
					type: 'parallel',
					states: {
						region1: { initial: 'R1_S1', states: { R1_S1: { on: { NEXT: 'R1_S2' } }, R1_S2: {} } },
						region2: { initial: 'R2_S1', states: { R2_S1: { on: { NEXT: 'R2_S2' } }, R2_S2: {} } },
						hist: { type: 'history', history: 'deep' }
					},
					on: { TO_B: 'B' }
				},
				B: { on: { TO_A: 'A.hist' } }
			}
		}`,
		start: xsnStep{state: "#testMachine.A.region1.R1_S1;#testMachine.A.region2.R2_S1"},
		steps: []xsnStep{
			{send: "NEXT", state: "#testMachine.A.region1.R1_S2;#testMachine.A.region2.R2_S2"},
			{send: "TO_B", state: "#testMachine.B"},
			{send: "TO_A", state: "#testMachine.A.region1.R1_S2;#testMachine.A.region2.R2_S2"},
		},
	},
	{
		name:   "a final child is restored",
		origin: "XStateNet2.Tests/FinalStatesTests.cs FinalState_InHistoryState",
		script: `{
			"id": "test",
			"initial": "A",
			"states": {
				"A": {
					"initial": "A1",
					"states": {
						"A1": { "on": { "FINISH_A": "A_done" } },
						"A_done": { "type": "final" },
						"hist": { "type": "history" }
					},
					"on": { "TO_B": "B" }
				},
				"B": { "on": { "TO_A_HIST": "A.hist" } }
			}
		}`,
		steps: []xsnStep{
			{send: "FINISH_A", state: "#test.A.A_done"},
			{send: "TO_B", state: "#test.B"},
			{send: "TO_A_HIST", state: "#test.A.A_done"},
		},
	},
}

func xsnDeepHistory(kind string) string {
	return ` {
		'id': 'testMachine',
		'initial': 'A',
		  states : {
			'A': {
				'initial': 'A1',
				entry: 'enterA', exit: 'exitA',
				'states': {
					'hist' : { type : 'history', 'history':'` + kind + `' },
					'A1': {
						'initial': 'A1a',
						entry: 'enterA1', exit: 'exitA1',
						'states': {
							'A1a': { entry: 'enterA1a', 'on': { 'TO_A1b': 'A1b' } },
							'A1b': { entry: 'enterA1b', exit: 'exitA1b' }
						}
					},
					'A2': {}
				},
				on: { 'TO_B': 'B' }
			},

			'B': {
				'on': { 'TO_A': 'A.hist' },
				initial : 'B1',
				states : { 'B1': {}, 'B2': {} }
			}
		}
	}`
}

func xsnParallelHistory(toA string) string {
	return `{
		id: 'testMachine',
		initial: 'A',
		states: {
			A: {
				type: 'parallel',
				states: {
					region1: {
						initial: 'R1_S1',
						states: {
							R1_S1: { on: { TO_R1_S2: 'R1_S2' } },
							R1_S2: {},
							hist: { type: 'history', history: 'shallow' }
						}
					},
					region2: {
						initial: 'R2_S1',
						states: {
							R2_S1: { on: { TO_R2_S2: 'R2_S2' } },
							R2_S2: {},
							hist: { type: 'history', history: 'shallow' }
						}
					}
				},
				on: { TO_B: 'B' }
			},
			B: { on: { TO_A: ` + toA + ` } }
		}
	}`
}

func TestXStateNetHistory(t *testing.T) { runXSN(t, xsnHistoryCases) }

// In-conditions: a transition taken only while another state is active.
var xsnInCases = []xsnCase{
	{
		name:   "met",
		origin: "test/UnitTest_InCondition.cs TestInConditionWithParallelStateMet",
		script: xsnInScript("'#inConditionMachine.stateA.subStateA2'"),
		start:  xsnStep{state: "#inConditionMachine.stateA.subStateA1;#inConditionMachine.stateB.subStateB1"},
		steps: []xsnStep{
			{send: "EVENT1", state: "#inConditionMachine.stateA.subStateA2;#inConditionMachine.stateB.subStateB1"},
			{send: "EVENT2", state: "#inConditionMachine.stateA.subStateA2;#inConditionMachine.stateB.subStateB2"},
			{send: "CHECK_IN_CONDITION", state: "#inConditionMachine.stateA.subStateA2;#inConditionMachine.stateB.finalState", changed: yes()},
		},
	},
	{
		name:   "not met",
		origin: "test/UnitTest_InCondition.cs TestInConditionWithParallelStateNotMet",
		script: xsnInScript("'#inConditionMachine.stateA.subStateA2'"),
		steps: []xsnStep{
			{send: "EVENT2", state: "#inConditionMachine.stateA.subStateA1;#inConditionMachine.stateB.subStateB2"},
			{send: "CHECK_IN_CONDITION", state: "#inConditionMachine.stateA.subStateA1;#inConditionMachine.stateB.subStateB2", changed: no()},
		},
	},
	{
		name:   "path from the root",
		origin: "test/UnitTest_InCondition.cs TestInConditionWithParallelStateMet, in as a path",
		script: xsnInScript("'stateA.subStateA2'"),
		steps: []xsnStep{
			{send: "EVENT1"},
			{send: "EVENT2"},
			{send: "CHECK_IN_CONDITION", state: "#inConditionMachine.stateA.subStateA2;#inConditionMachine.stateB.finalState"},
		},
	},
	{
		name:   "an ancestor counts",
		origin: "test/UnitTest_TrafficLight.cs TestParallelStates (in: '#trafficLight.light.red' while red.bright is the leaf)",
		script: xsnInScript("'#inConditionMachine.stateA'"),
		steps: []xsnStep{
			{send: "EVENT2"},
			{send: "CHECK_IN_CONDITION", state: "#inConditionMachine.stateA.subStateA1;#inConditionMachine.stateB.finalState"},
		},
	},
	{
		name:   "a guard that asks Scope.In",
		origin: "XStateNet2.Tests/TrafficLightTests.cs (cond inRedLight instead of in)",
		script: `{
			id: 'inConditionMachine',
			type: 'parallel',
			states: {
				stateA: { initial: 'subStateA1', states: { subStateA1: { on: { EVENT1: 'subStateA2' } }, subStateA2: {} } },
				stateB: {
					initial: 'subStateB1',
					states: {
						subStateB1: { on: { CHECK_IN_CONDITION: { target: 'finalState', cond: 'aIsDone' } } },
						finalState: {}
					}
				}
			}
		}`,
		guards: map[string]statechart.Guard{"aIsDone": func(s *statechart.Scope) bool {
			return s.In("#inConditionMachine.stateA.subStateA2")
		}},
		steps: []xsnStep{
			{send: "CHECK_IN_CONDITION", state: "#inConditionMachine.stateA.subStateA1;#inConditionMachine.stateB.subStateB1"},
			{send: "EVENT1"},
			{send: "CHECK_IN_CONDITION", state: "#inConditionMachine.stateA.subStateA2;#inConditionMachine.stateB.finalState"},
		},
	},
}

// xsnInScript is UnitTest_InCondition.cs's machine without its
// initial: 'parallelState' on the parallel root, which XStateNet ignores
// and the loader refuses (TestXStateNetParallelInitial).
func xsnInScript(in string) string {
	return `
	{
		'id': 'inConditionMachine',
		'type' : 'parallel',
		'states': {
			'stateA': {
				'initial': 'subStateA1',
				'states': {
					'subStateA1': { 'on': { 'EVENT1': 'subStateA2' } },
					'subStateA2': {}
				}
			},
			'stateB': {
				'initial': 'subStateB1',
				'states': {
					'subStateB1': { 'on': { 'EVENT2': 'subStateB2' } },
					'subStateB2': {
						'on': { 'CHECK_IN_CONDITION': { 'target': 'finalState', 'in': ` + in + ` } }
					},
					'finalState': {}
				}
			}
		}
	}`
}

func TestXStateNetInCondition(t *testing.T) { runXSN(t, xsnInCases) }
