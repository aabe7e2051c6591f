package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/protocol"
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
	// NewState is an orchestrated machine's state once it processed the
	// event; absent for other targets.
	NewState string `json:"new_state,omitempty"`
	// Error is why an orchestrated machine did not process it.
	Error string `json:"error,omitempty"`
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
	timeout := f.Duration("timeout", 10*time.Second, "how long to wait to connect and for the acknowledgement, at most")
	ackTimeout := f.Duration("ack-timeout", defaultAckTimeout, "how long to wait for the acknowledgement once the event is sent (default: the service's default SlowConsumerTimeout, 5s, and a second)")
	pos, code, ok := f.parse(args, 2, 3)
	if !ok {
		return code
	}
	target, event := pos[0], pos[1]
	payload, p, ok := f.payloadArg(pos, 2)
	if !ok {
		return 2
	}
	if err := checkTarget(target); err != nil {
		return failure(e, f, err)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := statebus.Dial(ctx, *as, f.bus()...)
	if err != nil {
		return failure(e, f, err)
	}
	defer c.Close()
	start := time.Now()
	ackCtx, ackCancel := context.WithTimeout(ctx, *ackTimeout)
	defer ackCancel()
	if orchestrated(ackCtx, c, target) {
		return sendToMachine(ackCtx, e, f, c, target, event, payload, p)
	}
	ack, err := c.SendEventAck(ackCtx, target, event, p, statebus.WithPriority(statebus.Priority(*priority)))
	if errors.Is(err, context.DeadlineExceeded) {
		err = diagnoseNoAck(c, target, event, min(time.Since(start), *ackTimeout))
	}
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

// defaultAckTimeout is how long send waits for an acknowledgement: the
// service answers "Target machine is not keeping up" after its
// SlowConsumerTimeout (5s by default) when the target's queue stays full,
// but an event queued behind a write the target never reads stays
// unacknowledged, so the wait needs a bound of its own.
const defaultAckTimeout = 6 * time.Second

// notAckedError is the error of a send whose acknowledgement did not come
// in time, with what the service said about the target meanwhile.
type notAckedError struct {
	target, event string
	waited        time.Duration
	// checked: the service listed its machines; connected: target was
	// among them.
	checked, connected bool
}

func (e *notAckedError) Error() string {
	msg := fmt.Sprintf("%s was not acknowledged within %s", e.event, e.waited.Round(time.Millisecond))
	switch {
	case e.checked && e.connected:
		return msg + fmt.Sprintf(": %s is connected but has not read it", e.target)
	case e.checked:
		return msg + fmt.Sprintf(": %s is no longer connected", e.target)
	}
	return msg + fmt.Sprintf(": the service has not written it to %s", e.target)
}

// hint says what to do about e.
func (e *notAckedError) hint(f *flags) string {
	switch {
	case e.checked && e.connected:
		return e.target + " is not reading its events: check that its process is alive and not blocked. The service keeps the event queued for it, writes it if it reads again and drops it if it disconnects."
	case e.checked:
		return e.target + " went away before it read the event. 'statebus machines" + pipeArg(f) + "' lists the machines that are connected."
	}
	return "The target is not reading its events, or statebusd is overloaded: 'statebus health" + pipeArg(f) + "' shows its state."
}

// diagnoseNoAck asks the service whether target is connected, after no
// acknowledgement came within waited.
func diagnoseNoAck(c *statebus.Client, target, event string, waited time.Duration) error {
	e := &notAckedError{target: target, event: event, waited: waited}
	if target == protocol.Broadcast || strings.HasPrefix(target, "@") {
		return e // which machine holds it up is not known
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	machines, err := c.Machines(ctx)
	if err != nil {
		return e
	}
	e.checked = true
	for _, m := range machines {
		if m.MachineID == target {
			e.connected = true
		}
	}
	return e
}

// ackText says where the service delivered an event sent to target.
func ackText(target string, ack statebus.Ack) string {
	switch {
	case ack.Stored:
		return fmt.Sprintf("stored for %s (durable mailbox, sequence %d)", ack.Target, ack.Sequence)
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
