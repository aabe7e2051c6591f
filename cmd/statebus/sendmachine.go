package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/protocol"
)

// orchestrated reports whether target is a state machine an orchestrator
// hosts: one whose registry entry has a state (docs/protocol.md, "Machine
// state"). Plain clients, .NET ones included, never set one.
func orchestrated(ctx context.Context, c *statebus.Client, target string) bool {
	if target == protocol.Broadcast || strings.HasPrefix(target, "@") {
		return false
	}
	ms, err := c.Machines(ctx)
	if err != nil {
		return false // the send says what is wrong
	}
	for _, m := range ms {
		if m.MachineID == target {
			return m.State != ""
		}
	}
	return false
}

// sendToMachine sends event to an orchestrated machine as a request (what
// an orchestrator's Send does) and prints the machine's new state.
func sendToMachine(ctx context.Context, e *env, f *flags, c *statebus.Client, target, event string, payload json.RawMessage, p any) int {
	start := time.Now()
	reply, err := c.Request(ctx, target, event, p)
	if err != nil {
		return failure(e, f, err)
	}
	took := time.Since(start)
	var res orchestrator.EventResult
	if err := json.Unmarshal(reply.Payload, &res); err != nil {
		return failure(e, f, fmt.Errorf("%s answered %s with %.100q, not an orchestrator's result", target, event, reply.Payload))
	}
	if f.json {
		writeJSON(e.stdout, sendResult{OK: res.Success, Source: c.ID(), Target: target, Event: event,
			Payload: payload, DeliveredTo: res.ProcessedBy, AckMs: float64(took) / float64(time.Millisecond),
			NewState: res.NewState, Error: res.Error})
	} else if res.Success {
		stdout(e).check(true, "%s processed by %s, now in %s (in %s)", event, res.ProcessedBy, res.NewState, ms(took))
	} else {
		stdout(e).check(false, "%s not processed by %s: %s", event, target, res.Error)
	}
	if !res.Success {
		return 1
	}
	return 0
}
