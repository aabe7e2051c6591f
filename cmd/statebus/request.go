package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/statebus/statebus"
)

func init() {
	commands["request"] = command{"send a request event and print the reply", runRequest}
}

// requestResult is request's --json document.
type requestResult struct {
	OK     bool            `json:"ok"`
	Target string          `json:"target"`
	Event  string          `json:"event"`
	Reply  json.RawMessage `json:"reply"`
	RttMs  float64         `json:"rtt_ms"`
}

func runRequest(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "request", "TARGET EVENT [JSON-PAYLOAD] [flags]",
		`Sends EVENT to TARGET as a request and prints the reply that TARGET's
request handler returns (statebus.Client.HandleRequest). The timeout travels
with the request, so the target can skip work nobody waits for. Exits 1 when
there is no responder ("No responder: TARGET is not connected"), when the
handler returns an error, or when no reply comes within --timeout.`,
		`statebus request calc ADD '{"A":2,"B":3}' --timeout 2s`)
	as := f.String("as", fmt.Sprintf("statebus-cli-%d", os.Getpid()), "machine id to send as")
	timeout := f.Duration("timeout", 5*time.Second, "how long to wait for the reply")
	pos, code, ok := f.parse(args, 2, 3)
	if !ok {
		return code
	}
	target, event := pos[0], pos[1]
	_, payload, ok := f.payloadArg(pos, 2)
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
	rep, err := c.Request(ctx, target, event, payload)
	if errors.Is(err, context.DeadlineExceeded) {
		err = &noReplyError{target: target, event: event, timeout: *timeout}
	}
	if err != nil {
		return failure(e, f, err)
	}
	took := time.Since(start)
	reply := rep.Payload
	if reply == nil {
		reply = json.RawMessage("null")
	}
	if f.json {
		writeJSON(e.stdout, requestResult{OK: true, Target: target, Event: event, Reply: reply,
			RttMs: float64(took) / float64(time.Millisecond)})
		return 0
	}
	fmt.Fprintln(e.stdout, string(reply))
	return 0
}

// noReplyError is the error of a request whose reply did not come within
// --timeout.
type noReplyError struct {
	target, event string
	timeout       time.Duration
}

func (e *noReplyError) Error() string {
	return fmt.Sprintf("no reply from %s to %s within --timeout %v", e.target, e.event, e.timeout)
}

// hint says what to do about e.
func (e *noReplyError) hint() string {
	return e.target + " took the request but its handler did not answer in time: it may be slow, blocked or not reading its events. Raise --timeout if it needs longer."
}
