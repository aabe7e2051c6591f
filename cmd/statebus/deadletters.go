package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/statebus/statebus"
)

func init() {
	commands["deadletters"] = command{"list or re-drive durable mailboxes' dead letters", runDeadLetters}
}

func runDeadLetters(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "deadletters", "[flags] [MACHINE-ID]",
		`Lists the dead letters of a durable mailbox (or of every mailbox): events
that were refused too often (DurableMaxDeliveries) or not processed within
DurableMaxAgeSeconds. With --redrive the mailbox's dead letters (or only
--seq) are stored in it again, as new events, and leave the dead letters.
Listing every mailbox's needs an unrestricted user.`,
		`statebus deadletters
statebus deadletters controller --redrive
statebus deadletters controller --redrive --seq 17`)
	redrive := f.Bool("redrive", false, "store the dead letters in their mailbox again")
	seq := f.Uint64("seq", 0, "with --redrive: only this `SEQUENCE`")
	timeout := f.Duration("timeout", 30*time.Second, "how long to wait for the service")
	pos, code, ok := f.parse(args, 0, 1)
	if !ok {
		return code
	}
	id := ""
	if len(pos) == 1 {
		id = pos[0]
	}
	if *redrive && id == "" {
		fmt.Fprintln(e.stderr, "statebus deadletters: --redrive needs the MACHINE-ID whose dead letters to re-drive")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *redrive {
		n, err := statebus.RedriveDeadLetters(ctx, id, *seq, f.bus()...)
		if err != nil {
			return failure(e, f, err)
		}
		if f.json {
			writeJSON(e.stdout, map[string]int{"Redriven": n})
			return 0
		}
		fmt.Fprintf(e.stdout, "Re-drove %d dead letters into %s.\n", n, id)
		return 0
	}
	list, total, err := statebus.ListDeadLetters(ctx, id, f.bus()...)
	if err != nil {
		return failure(e, f, err)
	}
	if f.json {
		if list == nil {
			list = []statebus.DeadLetter{}
		}
		writeJSON(e.stdout, map[string]any{"DeadLetters": list, "Total": total})
		return 0
	}
	if total == 0 {
		fmt.Fprintln(e.stdout, "No dead letters.")
		return 0
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tSEQUENCE\tDEAD SINCE\tEVENT\tFROM\tREASON")
	for _, d := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", d.MachineID, d.Sequence, d.At.Local().Format("2006-01-02 15:04:05"),
			d.Event.Name, d.Event.Source, d.Reason)
	}
	tw.Flush()
	if total > len(list) {
		fmt.Fprintf(e.stdout, "(%d of %d shown)\n", len(list), total)
	}
	return 0
}
