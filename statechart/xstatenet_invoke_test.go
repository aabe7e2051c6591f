package statechart_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

// Invoked services: onDone, onError, cancellation on exit.
var xsnInvokeCases = []xsnCase{
	{
		name:   "onDone with the result",
		origin: "test/UnitTest_InvokeServices.cs TestBasicInvokeService; XStateNet2.Tests/InvokeServiceTests.cs BasicInvokeService_ShouldCompleteSuccessfully",
		note:   "XStateNet sends done.invoke.<state>.<service> and then a plain onDone event, and puts the result in context _serviceResult",
		script: xsnFetchScript(""),
		actions: map[string]statechart.Action{
			"handleSuccess": xsnSaveData("data"),
			"handleError":   xsnSaveData("_errorMessage"),
		},
		services: xsnCountedFetch,
		start:    xsnStep{state: "#machineId.idle"},
		steps: []xsnStep{
			{send: "START", state: "#machineId.fetching", log: none},
			{do: func(t *testing.T, r *xsnRun) { r.release("fetchData") }, await: "done.invoke.fetchData",
				state: "#machineId.success", log: []string{"handleSuccess"}, ctx: map[string]any{"data": "fetched data"}, done: true},
			{do: xsnCalls(1)},
		},
	},
	{
		name:   "an explicit invoke id names the done event",
		origin: "test/UnitTest_InvokeServices.cs TestBasicInvokeService, with invoke id",
		script: xsnFetchScript("'id': 'loader',"),
		actions: map[string]statechart.Action{
			"handleSuccess": xsnSaveData("data"),
			"handleError":   xsnSaveData("_errorMessage"),
		},
		services: xsnCountedFetch,
		steps: []xsnStep{
			{send: "START"},
			{do: func(t *testing.T, r *xsnRun) { r.release("fetchData") }, await: "done.invoke.loader", state: "#machineId.success"},
		},
	},
	{
		name:   "onError with the message",
		origin: "test/UnitTest_InvokeServices.cs TestInvokeServiceWithError; XStateNet2.Tests/InvokeServiceTests.cs InvokeService_WithError_ShouldHandleGracefully",
		note:   "XStateNet sends error.invoke.<state>.<service> and a plain onError event, and puts the message in context _errorMessage",
		script: `{
			'id': 'machineId',
			'initial': 'idle',
			'states': {
				'idle': { 'on': { 'START': 'processing' } },
				'processing': {
					'invoke': {
						'src': 'failingService',
						'onDone': { 'target': 'success' },
						'onError': { 'target': 'error', 'actions': 'handleError' }
					}
				},
				'success': { 'type': 'final' },
				'error': { 'type': 'final' }
			}
		}`,
		actions: map[string]statechart.Action{"handleError": xsnSaveData("_errorMessage")},
		services: func(r *xsnRun) map[string]statechart.Service {
			return map[string]statechart.Service{"failingService": func(context.Context, *statechart.Scope) (any, error) {
				<-r.gate("failingService")
				return nil, errors.New("Service failed intentionally")
			}}
		},
		steps: []xsnStep{
			{send: "START", state: "#machineId.processing"},
			{do: func(t *testing.T, r *xsnRun) { r.release("failingService") }, await: "error.platform.failingService", state: "#machineId.error", log: []string{"handleError"},
				ctx: map[string]any{"_errorMessage": "Service failed intentionally"}, done: true},
		},
	},
	{
		name:   "two services in parallel regions",
		origin: "test/UnitTest_InvokeServices.cs TestMultipleInvokedServices; XStateNet2.Tests/InvokeServiceTests.cs MultipleServices_InParallelStates_ShouldExecuteConcurrently",
		script: `{
			'id': 'machineId',
			'type': 'parallel',
			'states': {
				'serviceA': {
					'initial': 'idle',
					'states': {
						'idle': { 'on': { 'START': 'running' } },
						'running': { 'invoke': { 'src': 'fetchData', 'onDone': { 'target': 'complete', 'actions': 'onServiceADone' } } },
						'complete': { 'type': 'final' }
					}
				},
				'serviceB': {
					'initial': 'idle',
					'states': {
						'idle': { 'on': { 'START': 'running' } },
						'running': { 'invoke': { 'src': 'longRunningService', 'onDone': { 'target': 'complete', 'actions': 'onServiceBDone' } } },
						'complete': { 'type': 'final' }
					}
				}
			}
		}`,
		record: []string{"onServiceADone", "onServiceBDone"},
		services: func(r *xsnRun) map[string]statechart.Service {
			return map[string]statechart.Service{
				"fetchData":          xsnWaitService(r, "fetchData", "A complete", nil),
				"longRunningService": xsnWaitService(r, "longRunningService", "B complete", nil),
			}
		},
		steps: []xsnStep{
			{send: "START", state: "#machineId.serviceA.running;#machineId.serviceB.running"},
			{do: func(t *testing.T, r *xsnRun) { r.release("longRunningService") }, await: "done.invoke.longRunningService",
				state: "#machineId.serviceA.running;#machineId.serviceB.complete", log: []string{"onServiceBDone"}},
			{do: func(t *testing.T, r *xsnRun) { r.release("fetchData") }, await: "done.invoke.fetchData",
				state: "#machineId.serviceA.complete;#machineId.serviceB.complete", log: []string{"onServiceADone"}, done: true},
		},
	},
	{
		name:   "exit cancels the service and drops its result",
		origin: "test/UnitTest_InvokeServices.cs TestServiceCancellationOnStateExit; XStateNet2.Tests/InvokeServiceTests.cs ServiceCancellation_OnStateExit_ShouldCancelService",
		note:   "XStateNet still sends done.invoke and onDone when a cancelled service returns normally (XStateNet5Impl/InvokeService.cs HandleServiceCompletion)",
		script: `{
			'id': 'machineId',
			'initial': 'idle',
			'states': {
				'idle': { 'on': { 'START': 'processing' } },
				'processing': {
					'invoke': { 'src': 'cancellable', 'onDone': { 'actions': 'stray' } },
					'on': { 'CANCEL': 'cancelled' }
				},
				'cancelled': { 'on': { '*': { 'actions': 'stray' } } }
			}
		}`,
		record: []string{"stray"},
		services: func(r *xsnRun) map[string]statechart.Service {
			cancelled, returned := r.gate("cancelled"), r.gate("returned")
			return map[string]statechart.Service{"cancellable": func(ctx context.Context, _ *statechart.Scope) (any, error) {
				defer close(returned)
				<-ctx.Done()
				close(cancelled)
				return nil, nil // like the C# service: it swallows the cancellation and returns normally
			}}
		},
		steps: []xsnStep{
			{send: "START", state: "#machineId.processing"},
			{send: "CANCEL", state: "#machineId.cancelled", do: func(t *testing.T, r *xsnRun) {
				xsnWithin(t, r.gate("cancelled"), "the service's context to be cancelled")
				xsnWithin(t, r.gate("returned"), "the service to return")
				// The runtime posts (or not) right after the return; give it
				// a moment, then drain: stray must not run.
				select {
				case <-r.postedCh:
				case <-time.After(100 * time.Millisecond):
				}
			}, log: none},
		},
	},
	{
		name:   "a service reads the context",
		origin: "XStateNet2.Tests/InvokeServiceTests.cs ServiceInvocation_WithDataPassing_ShouldUpdateContext",
		script: `{
			"id": "testMachine",
			"initial": "idle",
			"context": { "userId": "123", "userData": null },
			"states": {
				"idle": { "on": { "FETCH": "loading" } },
				"loading": { "invoke": { "src": "loadUserData", "onDone": { "target": "loaded", "actions": ["saveUserData"] } } },
				"loaded": { "type": "final" }
			}
		}`,
		actions: map[string]statechart.Action{"saveUserData": xsnSaveData("userData")},
		services: func(r *xsnRun) map[string]statechart.Service {
			return map[string]statechart.Service{"loadUserData": func(_ context.Context, s *statechart.Scope) (any, error) {
				<-r.gate("loadUserData")
				return map[string]any{"userId": s.Context["userId"], "name": "John Doe"}, nil
			}}
		},
		steps: []xsnStep{
			{send: "FETCH", state: "#testMachine.loading"},
			{do: func(t *testing.T, r *xsnRun) { r.release("loadUserData") }, await: "done.invoke.loadUserData", state: "#testMachine.loaded",
				ctx: map[string]any{"userData": map[string]any{"name": "John Doe", "userId": "123"}}},
		},
	},
}

func xsnFetchScript(id string) string {
	return `{
		'id': 'machineId',
		'initial': 'idle',
		'states': {
			'idle': { 'on': { 'START': 'fetching' } },
			'fetching': {
				'invoke': {
					` + id + `
					'src': 'fetchData',
					'onDone': { 'target': 'success', 'actions': 'handleSuccess' },
					'onError': { 'target': 'failure', 'actions': 'handleError' }
				}
			},
			'success': { 'type': 'final' },
			'failure': { 'type': 'final' }
		}
	}`
}

// xsnCountedFetch is fetchData, released by the test, counting its calls in
// the run's "calls" gate map entry.
func xsnCountedFetch(r *xsnRun) map[string]statechart.Service {
	wait := xsnWaitService(r, "fetchData", "fetched data", nil)
	calls := &atomic.Int32{}
	r.mu.Lock()
	r.calls = calls
	r.mu.Unlock()
	return map[string]statechart.Service{"fetchData": func(ctx context.Context, s *statechart.Scope) (any, error) {
		calls.Add(1)
		return wait(ctx, s)
	}}
}

func xsnCalls(n int32) func(t *testing.T, r *xsnRun) {
	return func(t *testing.T, r *xsnRun) {
		if got := r.calls.Load(); got != n {
			t.Errorf("the service ran %d times, want %d", got, n)
		}
	}
}

func xsnWithin(t *testing.T, c chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10 s for %s", what)
	}
}

func TestXStateNetInvoke(t *testing.T) { runXSN(t, xsnInvokeCases) }

// Multiple targets: one transition into several regions.
var xsnMultiTargetCases = []xsnCase{
	{
		name:   "single target moves one region",
		origin: "test/UnitTest_MultipleTargets.cs TestSingleTargetTransition; XStateNet2.Tests/MultipleTargetsTests.cs SingleTarget_ShouldTransitionOneRegion",
		script: `
		{
			id: 'machine',
			type: 'parallel',
			context: { 'actionExecuted': '' },
			states: {
				'region1': {
					initial: 'state1',
					states: { 'state1': { on: { 'EVENT': { target: 'state2', actions: 'actionA' } } }, 'state2': {} }
				},
				'region2': { initial: 'stateA', states: { 'stateA': {}, 'stateB': {} } }
			}
		}`,
		actions: map[string]statechart.Action{"actionA": xsnSet("actionExecuted", "A")},
		start:   xsnStep{state: "#machine.region1.state1;#machine.region2.stateA"},
		steps: []xsnStep{
			{send: "EVENT", state: "#machine.region1.state2;#machine.region2.stateA", ctx: map[string]any{"actionExecuted": "A"}},
		},
	},
	{
		name:   "reset all regions: exits, then the action, then entries",
		origin: "test/UnitTest_MultipleTargets.cs TestMultipleTargetsTransition; XStateNet2.Tests/MultipleTargetsTests.cs MultipleTargets_WithActions_ShouldExecuteActions",
		note: "XStateNet runs resetAction first, then exits and enters region by region " +
			"(XStateNet5Impl/Transition.cs ExecuteMultipleTargets); for NEXT it also runs the three " +
			"transitions one after another (exit, enter per region) instead of in one microstep",
		script: xsnResetAll,
		record: xsnResetAllLog,
		start:  xsnStep{state: "#machineId.region1.state1;#machineId.region2.stateA;#machineId.region3.initial"},
		steps: []xsnStep{
			{send: "NEXT", state: "#machineId.region1.state2;#machineId.region2.stateB;#machineId.region3.final",
				log: []string{"exitInitial", "exitStateA", "exitState1", "enterState2", "enterStateB", "enterFinal"}},
			{send: "RESET_ALL", state: "#machineId.region1.state1;#machineId.region2.stateA;#machineId.region3.initial",
				log: []string{"exitFinal", "exitStateB", "exitState2", "resetAction", "enterState1", "enterStateA", "enterInitial"}},
		},
	},
	{
		name:   "nested parallel: the parallel source is exited and re-entered",
		origin: "test/UnitTest_MultipleTargets.cs TestMultipleTargetsInNestedParallel; XStateNet2.Tests/MultipleTargetsTests.cs MultipleTargets_InNestedParallel_ShouldWork",
		note:   "SCXML's transition domain: internal only keeps a compound source; a parallel source is left",
		script: `
		{
			id: 'machineId',
			initial: 'active',
			states: {
				'active': {
					type: 'parallel',
					entry: 'enterActive', exit: 'exitActive',
					on: { 'EMERGENCY': { target: [ '.left.error', '.right.stopped' ] } },
					states: {
						'left': {
							initial: 'idle',
							states: { 'idle': { on: { 'START': 'running' } }, 'running': { exit: 'exitRunning' }, 'error': { entry: 'enterError' } }
						},
						'right': {
							initial: 'waiting',
							states: { 'waiting': { on: { 'START': 'processing' } }, 'processing': { exit: 'exitProcessing' }, 'stopped': { entry: 'enterStopped' } }
						}
					}
				}
			}
		}`,
		record: []string{"enterActive", "exitActive", "exitRunning", "exitProcessing", "enterError", "enterStopped"},
		steps: []xsnStep{
			{send: "START", state: "#machineId.active.left.running;#machineId.active.right.processing"},
			{send: "EMERGENCY", state: "#machineId.active.left.error;#machineId.active.right.stopped",
				log: []string{"exitProcessing", "exitRunning", "exitActive", "enterActive", "enterError", "enterStopped"}},
		},
	},
	{
		name:   "region-level targets into another region",
		origin: "test/UnitTest_MultipleTargets.cs TestMixedSingleAndMultipleTargets",
		script: `
		{
			id: 'machineId',
			type: 'parallel',
			states: {
				region1: {
					initial: 'a',
					states: { a: { on: { 'EVENT1': 'b', 'EVENT2': { target: 'c' } } }, b: {}, c: {} }
				},
				region2: {
					initial: 'x',
					on: { 'EVENT2': { target: [ '.x', '#machineId.region1.c' ] } },
					states: { x: { on: { 'EVENT1': 'y' } }, y: {}, z: {} }
				}
			}
		}`,
		steps: []xsnStep{
			{send: "EVENT1", state: "#machineId.region1.b;#machineId.region2.y"},
			{send: "EVENT2", state: "#machineId.region1.c;#machineId.region2.x"},
		},
	},
	{
		name:   "absolute targets",
		origin: "XStateNet2.Tests/MultipleTargetsTests.cs MultipleTargets_WithAbsolutePaths_ShouldWork",
		script: `{
			"id": "test",
			"type": "parallel",
			"on": { "RESET_ALL": { "target": ["#test.region1.state1", "#test.region2.stateA"] } },
			"states": {
				"region1": { "initial": "state1", "states": { "state1": { "on": { "NEXT": "state2" } }, "state2": {} } },
				"region2": { "initial": "stateA", "states": { "stateA": { "on": { "NEXT": "stateB" } }, "stateB": {} } }
			}
		}`,
		steps: []xsnStep{
			{send: "NEXT", state: "#test.region1.state2;#test.region2.stateB"},
			{send: "RESET_ALL", state: "#test.region1.state1;#test.region2.stateA"},
		},
	},
	{
		name:   "leaving the parallel state",
		origin: "XStateNet2.Tests/MultipleTargetsTests.cs MultipleTargets_CrossingParallelBoundary_ShouldExitParallel",
		script: `{
			"id": "test",
			"initial": "parallel",
			"states": {
				"parallel": {
					"type": "parallel",
					"on": { "EXIT": { "target": "#test.done" } },
					"states": {
						"region1": { "initial": "state1", "states": { "state1": {} } },
						"region2": { "initial": "stateA", "states": { "stateA": {} } }
					}
				},
				"done": { "type": "final" }
			}
		}`,
		start: xsnStep{state: "#test.parallel.region1.state1;#test.parallel.region2.stateA"},
		steps: []xsnStep{{send: "EXIT", state: "#test.done", done: true}},
	},
}

const xsnResetAll = `
{
	id: 'machineId',
	type: 'parallel',
	context: { 'actionExecuted': '', 'resetExecuted': false },
	on: {
		'RESET_ALL': { target: [ '.region1.state1', '.region2.stateA', '.region3.initial' ], actions: 'resetAction' }
	},
	states: {
		'region1': {
			initial: 'state1',
			states: {
				'state1': { entry: 'enterState1', exit: 'exitState1', on: { 'NEXT': 'state2' } },
				'state2': { entry: 'enterState2', exit: 'exitState2' }
			}
		},
		'region2': {
			initial: 'stateA',
			states: {
				'stateA': { entry: 'enterStateA', exit: 'exitStateA', on: { 'NEXT': 'stateB' } },
				'stateB': { entry: 'enterStateB', exit: 'exitStateB' }
			}
		},
		'region3': {
			initial: 'initial',
			states: {
				initial: { entry: 'enterInitial', exit: 'exitInitial', on: { 'NEXT': 'final' } },
				'final': { entry: 'enterFinal', exit: 'exitFinal' }
			}
		}
	}
}`

var xsnResetAllLog = []string{"resetAction", "enterState1", "exitState1", "enterState2", "exitState2",
	"enterStateA", "exitStateA", "enterStateB", "exitStateB", "enterInitial", "exitInitial", "enterFinal", "exitFinal"}

func TestXStateNetMultipleTargets(t *testing.T) { runXSN(t, xsnMultiTargetCases) }
