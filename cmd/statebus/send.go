package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
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
	// DeliveredTo is the machine the service wrote the event to: the
	// group member, or the machine a routing rule redirected it to;
	// for a fan-out ("*", "@group:*") the target as sent.
	DeliveredTo string `json:"delivered_to"`
	// Recipients is how many machines got a fan-out event; absent for an
	// event to one machine.
	Recipients *int    `json:"recipients,omitempty"`
	AckMs      float64 `json:"ack_ms"`
}

func runSend(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "send", "TARGET EVENT [JSON-PAYLOAD] [flags]",
		`Sends the event EVENT to the machine TARGET ("*" for every other subscribed
machine, "@GROUP" for one member of a group) and waits for the service's
acknowledgement that it was written to the target's connection, then prints
what the service said: the machine it reached (the group member, or the
machine a routing rule redirected it to), or for "*" how many machines got
it. Exits 1 if it reached none, for example with
"Target machine not connected: TARGET", or a "*" with 0 recipients.`,
		`statebus send machine-b PING '{"Message":"Hello"}'
statebus send '*' PING --json | jq .recipients`)
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
	ack, err := c.SendEventAck(ctx, target, event, p, statebus.WithPriority(statebus.Priority(*priority)))
	if err != nil {
		return failure(e, f, err)
	}
	took := time.Since(start)
	// A fan-out that reached nobody was accepted, not delivered.
	reached := ack.Recipients == nil || *ack.Recipients > 0
	if f.json {
		writeJSON(e.stdout, sendResult{OK: reached, Source: *as, Target: target, Event: event,
			Payload: payload, DeliveredTo: ack.Target, Recipients: ack.Recipients,
			AckMs: float64(took) / float64(time.Millisecond)})
	} else {
		stdout(e).check(reached, "%s %s (acknowledged in %s)", event, ackText(target, ack), ms(took))
	}
	if !reached {
		return 1
	}
	return 0
}

// ackText says where the service delivered an event sent to target.
func ackText(target string, ack statebus.Ack) string {
	switch {
	case ack.Recipients != nil && *ack.Recipients == 0:
		return fmt.Sprintf("reached no one: no other machine is subscribed for %s", target)
	case ack.Recipients != nil:
		n := "machines"
		if *ack.Recipients == 1 {
			n = "machine"
		}
		return fmt.Sprintf("delivered to %d %s (%s)", *ack.Recipients, n, target)
	case ack.Target != "" && ack.Target != target && strings.HasPrefix(target, "@"):
		return fmt.Sprintf("delivered to %s (member of %s)", ack.Target, target[1:])
	case ack.Target != "" && ack.Target != target:
		return fmt.Sprintf("delivered to %s (redirected from %s by a routing rule)", ack.Target, target)
	}
	return "delivered to " + target
}
