package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/protocol"
)

func init() {
	commands["reply"] = command{"answer requests with a fixed reply or a command's output", runReply}
}

// replyLine is one --json line of reply: a request it handled.
type replyLine struct {
	Source  string          `json:"source"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
	Reply   json.RawMessage `json:"reply,omitempty"`
	Error   string          `json:"error,omitempty"`
	Ms      float64         `json:"ms"`
}

func runReply(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "reply", "ID EVENT [JSON-REPLY] [flags]",
		`Registers the machine id ID and answers the requests named EVENT ("*" for
any name) sent to it, like 'nats reply': with JSON-REPLY (default null), or
with --command CMD, which runs once per request with the request's payload on
its stdin; its stdout is the reply (as is if it is JSON, else as a JSON
string), and a non-zero exit answers with an error carrying its stderr. Prints
a line per request handled (with --json one JSON object per line) until
interrupted (Ctrl-C). Try 'statebus request' against it without writing Go.`,
		`statebus reply calc ADD '{"Sum":5}'
statebus reply calc ADD --command 'jq -c "{Sum: (.A + .B)}"'
statebus request calc ADD '{"A":2,"B":3}'`)
	command := f.String("command", "", "run `CMD` (with sh -c) per request: payload on stdin, reply from stdout")
	pos, code, ok := f.parse(args, 2, 3)
	if !ok {
		return code
	}
	id, event := pos[0], pos[1]
	static, _, ok := f.payloadArg(pos, 2)
	if !ok {
		return 2
	}
	if static != nil && *command != "" {
		return f.fail("give either JSON-REPLY or --command, not both")
	}
	if static == nil {
		static = json.RawMessage("null")
	}
	answer := func(ctx context.Context, payload []byte) (json.RawMessage, error) { return static, nil }
	if *command != "" {
		answer = func(ctx context.Context, payload []byte) (json.RawMessage, error) {
			return runReplyCommand(ctx, *command, payload)
		}
	}

	c, err := statebus.Dial(ctx, id, f.bus()...)
	if err != nil {
		return failure(e, f, err)
	}
	defer c.Close()
	o := stdout(e)
	var handled atomic.Int64
	c.HandleRequest(event, func(ctx context.Context, ev statebus.Event) (any, error) {
		start := time.Now()
		payload := ev.Payload
		if payload == nil {
			payload = json.RawMessage("null")
		}
		rep, err := answer(ctx, payload)
		handled.Add(1)
		if f.json {
			l := replyLine{Source: ev.Source, Event: ev.Name, Payload: payload, Reply: rep,
				Ms: float64(time.Since(start)) / float64(time.Millisecond)}
			if err != nil {
				l.Error = err.Error()
			}
			line, _ := json.Marshal(l)
			o.printf("%s\n", line)
		} else if err != nil {
			o.check(false, "%s from %s %s: %v", ev.Name, ev.Source, payload, err)
		} else {
			o.check(true, "%s from %s %s -> %s", ev.Name, ev.Source, payload, rep)
		}
		if err != nil {
			return nil, err
		}
		return rep, nil
	})
	status := newOut(e.stderr, false)
	status.printf("Answering %s requests to %s on %s; press Ctrl-C to stop.\n", event, id, f.socket())
	select {
	case <-ctx.Done():
		status.printf("Answered %d requests.\n", handled.Load())
		return 0
	case <-c.Done():
		return failure(e, f, fmt.Errorf("%w (is statebusd still running?)", c.Err()))
	}
}

// runReplyCommand runs cmd with payload on its stdin and returns its
// stdout as the reply: as is when it is JSON, else as a JSON string.
func runReplyCommand(ctx context.Context, cmd string, payload []byte) (json.RawMessage, error) {
	var c *exec.Cmd
	if runtime.GOOS == "windows" {
		c = exec.CommandContext(ctx, "cmd", "/C", cmd)
	} else {
		c = exec.CommandContext(ctx, "sh", "-c", cmd)
	}
	var stdout, stderr bytes.Buffer
	c.Stdin = bytes.NewReader(append(payload, '\n'))
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && msg != "":
			return nil, fmt.Errorf("%s: %s", ee.ProcessState, msg)
		case msg != "":
			return nil, fmt.Errorf("%v: %s", err, msg)
		}
		return nil, err
	}
	out := bytes.TrimSpace(stdout.Bytes())
	switch {
	case len(out) == 0:
		return json.RawMessage("null"), nil
	case protocol.Valid(out):
		var buf bytes.Buffer
		if json.Compact(&buf, out) == nil {
			return buf.Bytes(), nil
		}
	}
	s, _ := json.Marshal(string(out))
	return s, nil
}
