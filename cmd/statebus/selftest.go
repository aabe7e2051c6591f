package main

import (
	"context"
	"flag"
	"slices"

	"github.com/statebus/statebus/internal/selftest"
)

func init() {
	commands["selftest"] = command{"check a bus started in-process; needs no running statebusd", runSelftest}
}

func runSelftest(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "selftest", "[flags]",
		`Starts a bus in-process on a temporary socket (no running statebusd needed;
--pipe-name and --server-uid are refused: it never talks to another bus) and checks it with real clients: registration,
subscription, routing, the error texts, ping-pong, the 5-client broadcast,
broadcast to "*", a stress run delivered in order, the health connection
count going up and back down, and shutdown. Prints a line per check and a
summary; exits 0 only if every check passed. statebusd --self-test runs the
same.`,
		`statebus selftest
statebus selftest --messages 100000 --json`)
	messages := f.Int("messages", 10_000, "how many events the stress check sends")
	timeout := f.Duration("timeout", 0, "bound on each check (default 30s)")
	if _, code, ok := f.parse(args, 0, 0); !ok {
		return code
	}
	var other string
	f.Visit(func(fl *flag.Flag) {
		if fl.Name == "pipe-name" || fl.Name == "server-uid" || slices.Contains(remoteFlagNames, fl.Name) {
			other = fl.Name
		}
	})
	if other != "" {
		return f.fail("--%s does not apply: selftest checks a bus it starts itself on a temporary socket; to check a running statebusd use 'statebus health' or 'statebus test ping --%s ...'", other, other)
	}
	if *messages < 1 {
		return f.fail("--messages must be at least 1, not %d", *messages)
	}
	ok := selftest.Run(ctx, e.stdout, selftest.Options{
		Messages: *messages, Timeout: *timeout, Color: e.tty && !f.json, JSON: f.json})
	if !ok {
		return 1
	}
	return 0
}
