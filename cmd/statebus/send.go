package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/statebus/statebus"
)

func init() {
	commands["send"] = command{"send one event and wait for its acknowledgement", runSend}
}

// sendResult is send's --json document.
type sendResult struct {
	OK      bool            `json:"ok"`
	Source  string          `json:"source"`
	Target  string          `json:"target"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
	AckMs   float64         `json:"ack_ms"`
}

func runSend(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "send", "TARGET EVENT [JSON-PAYLOAD] [flags]",
		`Sends the event EVENT to the machine TARGET ("*" for every other subscribed
machine) and waits for the service's acknowledgement that it was written to the
target's connection. Exits 1 if it was not, for example with
"Target machine not connected: TARGET".`,
		`statebus send machine-b PING '{"Message":"Hello"}'`)
	as := f.String("as", fmt.Sprintf("statebus-cli-%d", os.Getpid()), "machine id to send as")
	priority := f.String("priority", "Normal", "High, Normal or Low: the event's place in the target's queue")
	timeout := f.Duration("timeout", 10*time.Second, "how long to wait to connect and for the acknowledgement")
	pos, code, ok := f.parse(args, 2, 3)
	if !ok {
		return code
	}
	target, event := pos[0], pos[1]
	payload, p, ok := f.payloadArg(pos, 2)
	if !ok {
		return 2
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := statebus.Dial(ctx, *as, f.bus()...)
	if err != nil {
		return failure(e, f, err)
	}
	defer c.Close()
	start := time.Now()
	if err := c.SendEvent(ctx, target, event, p, statebus.WithPriority(statebus.Priority(*priority))); err != nil {
		return failure(e, f, err)
	}
	took := time.Since(start)
	if f.json {
		writeJSON(e.stdout, sendResult{OK: true, Source: *as, Target: target, Event: event,
			Payload: payload, AckMs: float64(took) / float64(time.Millisecond)})
		return 0
	}
	stdout(e).check(true, "%s delivered to %s (acknowledged in %s)", event, target, ms(took))
	return 0
}
