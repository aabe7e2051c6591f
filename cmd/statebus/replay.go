package main

import (
	"context"
	"fmt"
	"time"

	"github.com/statebus/statebus"
)

func init() {
	commands["replay"] = command{"print a durable mailbox's stored events", runReplay}
}

func runReplay(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "replay", "[flags] MACHINE-ID",
		`Prints the events a durable mailbox still holds (processed or not), oldest
first: its sequence, when it was stored, and the event as its sender wrote it.
Only the holder of the id and unrestricted users may read a mailbox.`,
		`statebus replay controller --since 10m
statebus replay controller --from 1200 --limit 50 --json`)
	since := f.Duration("since", 0, "only events stored within this `DURATION` before now (e.g. 10m)")
	from := f.Uint64("from", 0, "the first `SEQUENCE` to print")
	limit := f.Int("limit", 0, "print at most `N` events (default: all)")
	timeout := f.Duration("timeout", 30*time.Second, "how long to wait for the service")
	pos, code, ok := f.parse(args, 1, 1)
	if !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	o := statebus.ReplayOptions{FromSequence: *from}
	if *since > 0 {
		o.Since = time.Now().Add(-*since)
	}
	var all []statebus.StoredEvent
	for *limit <= 0 || len(all) < *limit {
		if *limit > 0 {
			o.Limit = *limit - len(all)
		}
		evs, next, err := statebus.ReplayMailbox(ctx, pos[0], o, f.bus()...)
		if err != nil {
			return failure(e, f, err)
		}
		all = append(all, evs...)
		if len(evs) == 0 || next <= o.FromSequence {
			break
		}
		o.FromSequence, o.Since = next, time.Time{}
	}
	if f.json {
		type row struct {
			Sequence uint64
			StoredAt time.Time
			Event    statebus.Event
		}
		rows := make([]row, len(all))
		for i, ev := range all {
			rows[i] = row{ev.Sequence, ev.StoredAt, ev.Event}
		}
		writeJSON(e.stdout, rows)
		return 0
	}
	if len(all) == 0 {
		fmt.Fprintf(e.stdout, "Mailbox %s holds no events in that range.\n", pos[0])
		return 0
	}
	for _, ev := range all {
		fmt.Fprintf(e.stdout, "%d\t%s\t%s -> %s\t%s\t%s\n", ev.Sequence, ev.StoredAt.Local().Format("2006-01-02 15:04:05.000"),
			ev.Event.Source, ev.Event.Target, ev.Event.Name, orDash(string(ev.Event.Payload)))
	}
	return 0
}
