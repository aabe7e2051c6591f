package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"statebus"
)

func init() {
	commands["listen"] = command{"register a machine id and print the events it receives", runListen}
}

func runListen(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "listen", "ID [flags]",
		`Registers the machine id ID and prints each event it receives as one JSON
line on stdout (SourceMachineId, TargetMachineId, EventName, Payload, Timestamp),
until interrupted (Ctrl-C). If statebusd goes away it reconnects and registers
ID again when it is back (unless --reconnect=false: then it exits 1). Status
goes to stderr, so the output pipes into jq; --json changes nothing.`,
		`statebus listen machine-b
statebus listen machine-b --event PING | jq .Payload`)
	name := f.String("event", "", "print only events with this name (default: every event)")
	reconnect := f.Bool("reconnect", true, "reconnect when the connection to statebusd is lost; false: exit 1")
	pos, code, ok := f.parse(args, 1, 1)
	if !ok {
		return code
	}
	id := pos[0]
	status := newOut(e.stderr, false)
	onState := func(sc statebus.StateChange) {
		if sc.State == statebus.Disconnected {
			status.check(false, "%s; reconnecting", errText(sc.Err))
		} else {
			status.check(true, "reconnected to %s as %s (attempt %d)", f.socket(), id, sc.Attempt)
		}
	}
	c, err := statebus.Dial(ctx, id, append(f.bus(), statebus.WithReconnect(*reconnect), statebus.WithStateHandler(onState))...)
	if err != nil {
		return failure(e, f, err)
	}
	defer c.Close()

	// A failed write (the reader of a pipe went away) ends the command.
	writeErr := make(chan error, 1)
	var once sync.Once
	filter := *name
	if filter == "" {
		filter = "*"
	}
	c.OnEvent(filter, func(ev statebus.Event) {
		line, err := json.Marshal(ev)
		if err == nil {
			_, err = e.stdout.Write(append(line, '\n'))
		}
		if err != nil {
			once.Do(func() { writeErr <- err })
		}
	})
	status.printf("Listening as %s on %s; press Ctrl-C to stop.\n", id, f.socket())

	select {
	case <-ctx.Done():
		return 0
	case err := <-writeErr:
		fmt.Fprintf(e.stderr, "statebus listen: cannot write to stdout: %v\n", err)
		return 1
	case <-c.Done():
		return failure(e, f, fmt.Errorf("%w (is statebusd still running?)", c.Err()))
	}
}
