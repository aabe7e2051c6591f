package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/statebus/statebus"
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
goes to stderr, so the output pipes into jq. The events are JSON lines with or
without --json; with --json a failure is also reported on stdout, as a last
line {"ok":false,"error":...}.

--watch FILTER also prints copies of other machines' events that match
FILTER: comma-separated FIELD=GLOB pairs over EventName, SourceMachineId and
TargetMachineId ("*" any run of characters, "?" any one). Watching others'
traffic is a privilege the service's access rules may deny.`,
		`statebus listen machine-b
statebus listen machine-b --event PING | jq .Payload
statebus listen monitor --watch 'EventName=ALARM_*'
statebus listen monitor --watch 'SourceMachineId=sensor-*,TargetMachineId=controller'`)
	name := f.String("event", "", "print only events with this name (default: every event)")
	var groups []string
	f.Func("group", "also join the group `NAME`: events sent to @NAME are shared among its members (repeatable)", func(v string) error {
		groups = append(groups, v)
		return nil
	})
	var watches []statebus.Filter
	f.Func("watch", "also print copies of others' events matching `FILTER` (FIELD=GLOB,...; repeatable)", func(v string) error {
		w, err := parseWatch(v)
		watches = append(watches, w)
		return err
	})
	reconnect := f.Bool("reconnect", true, "reconnect when the connection to statebusd is lost; false: exit 1")
	durable := f.Bool("durable", false, "declare ID durable: events sent to it are stored until printed (docs/durability.md)")
	pos, code, ok := f.parse(args, 1, 1)
	if !ok {
		return code
	}
	id := pos[0]
	status := newOut(e.stderr, false)
	onStatus := func(sc statebus.StatusChange) {
		switch {
		case sc.To == statebus.Reconnecting:
			status.check(false, "%s; reconnecting", errText(sc.Err))
		case sc.From == statebus.Reconnecting && sc.To == statebus.Connected:
			status.check(true, "reconnected to %s as %s (attempt %d)", f.socket(), id, sc.Attempt)
		}
	}
	opts := append(f.bus(), statebus.WithReconnect(*reconnect), statebus.WithStatusHandler(onStatus))
	if *durable {
		opts = append(opts, statebus.WithDurable())
	}
	c, err := statebus.Dial(ctx, id, opts...)
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
	print := func(ev statebus.Event) {
		line, err := json.Marshal(ev)
		if err == nil {
			_, err = e.stdout.Write(append(line, '\n'))
		}
		if err != nil {
			once.Do(func() { writeErr <- err })
		}
	}
	c.OnEvent(filter, print)
	for _, g := range groups {
		if err := c.JoinGroup(ctx, g); err != nil {
			return failure(e, f, err)
		}
	}
	for _, w := range watches {
		if _, err := c.Watch(ctx, w, print); err != nil {
			return failure(e, f, err)
		}
	}
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

// parseWatch reads a --watch filter: FIELD=GLOB pairs separated by commas.
func parseWatch(v string) (statebus.Filter, error) {
	var w statebus.Filter
	for _, part := range strings.Split(v, ",") {
		field, glob, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case !ok:
			return w, fmt.Errorf("%q is not FIELD=GLOB", part)
		case field == "EventName":
			w.EventName = glob
		case field == "SourceMachineId" || field == "Source":
			w.Source = glob
		case field == "TargetMachineId" || field == "Target":
			w.Target = glob
		default:
			return w, fmt.Errorf("unknown field %q: use EventName, SourceMachineId or TargetMachineId", field)
		}
	}
	return w, nil
}
