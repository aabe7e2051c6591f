package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

func init() {
	commands["menu"] = command{"the XStateNet test client's interactive menu", runMenu}
}

// menuJSON is menu's --json document: every scenario it ran.
type menuJSON struct {
	OK   bool  `json:"ok"`
	Runs []any `json:"runs"`
}

func runMenu(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "menu", "[flags]",
		`The XStateNet test client's interactive menu: choose a scenario (ping-pong,
multi-client broadcast, stress, custom), see its result, choose again, until
5 or end of input. Exits 1 if any scenario it ran failed, 130 on Ctrl-C. With --json the
menu and prompts go to stderr and one JSON document with every run's result
goes to stdout at the end.`,
		`statebus menu
printf '1\n3\n1000\n5\n' | statebus menu`)
	timeout := f.Duration("timeout", time.Minute, "give up on a scenario after this long")
	as := f.String("as", fmt.Sprintf("statebus-cli-%d", os.Getpid()), "machine id the custom mode connects as")
	if _, code, ok := f.parse(args, 0, 0); !ok {
		return code
	}
	o := stdout(e)
	if f.json {
		o = newOut(e.stderr, false)
	}
	lr := newLineReader(e.stdin)
	defer lr.stop()
	doc := menuJSON{OK: true, Runs: []any{}}
	o.printf("XStateNet InterProcess Test Client (statebus) on %s\n", f.socket())
loop:
	for {
		o.printf("\n1. Ping-Pong test\n2. Multi-client broadcast\n3. Stress test\n4. Custom\n5. Exit\nChoose 1-5: ")
		choice, ok := lr.next(ctx)
		if !ok {
			o.printf("\n")
			break
		}
		o.printf("\n")
		var (
			run    any
			passed bool
		)
		switch choice {
		case "1":
			run, passed = scenarioPing(ctx, o, f, *timeout)
		case "2":
			run, passed = scenarioMulti(ctx, o, f, *timeout)
		case "3":
			n, ok := askMessages(ctx, o, lr)
			if !ok {
				break loop
			}
			run, passed = scenarioStress(ctx, o, f, *timeout, n)
		case "4":
			run, passed = scenarioCustom(ctx, o, f, lr, *as)
		case "5", "q", "quit", "exit":
			break loop
		case "":
			continue
		default:
			o.check(false, "%q is not on the menu: enter a number from 1 to 5", choice)
			continue
		}
		doc.Runs = append(doc.Runs, run)
		doc.OK = doc.OK && passed
	}
	if f.json {
		writeJSON(e.stdout, doc)
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return exitInterrupted // Ctrl-C, at a prompt or during a scenario
	case !doc.OK:
		return 1
	}
	return 0
}

// askMessages asks for the stress test's number of messages until it gets
// one (an empty line: the default); ok is false at end of input or when
// ctx ends.
func askMessages(ctx context.Context, o *out, lr *lineReader) (n int, ok bool) {
	for {
		o.printf("Messages [%d]: ", defaultMessages)
		text, ok := lr.next(ctx)
		if !ok {
			o.printf("\n")
			return 0, false
		}
		if text == "" {
			return defaultMessages, true
		}
		if v, err := strconv.Atoi(text); err == nil && v >= 1 {
			return v, true
		}
		o.check(false, "%q is not a number of messages: enter a whole number of at least 1", text)
	}
}
