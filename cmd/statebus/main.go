// Command statebus is the statebus command-line tool: send and listen to
// events, inspect the service, run the XStateNet test client scenarios, the
// self-test and benchmarks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/statebus/statebus/internal/telemetry"
	"github.com/statebus/statebus/internal/version"
	"go.opentelemetry.io/otel/trace"
)

// command is one subcommand. run gets the arguments after the
// subcommand's name and returns the exit code.
type command struct {
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

// env is what a subcommand talks to, so tests run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// tty reports whether stdout is a terminal (colour, progress bars).
	tty bool
	// tracer traces the command's clients when the OTEL_* variables ask
	// for it (package telemetry); nil otherwise.
	tracer trace.TracerProvider
}

// commands is filled by each subcommand's file in an init function.
var commands = map[string]command{}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, tty: isTerminal(os.Stdout)}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run is main, testable in-process.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintf(e.stdout, "statebus %s\n", version.String())
		return 0
	}
	args, err := globalFlagsFirst(args)
	if errors.Is(err, flag.ErrHelp) {
		usage(e.stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "statebus: %v (see statebus --help)\n", err)
		return 2
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "statebus: unknown command %q (see statebus --help)\n", args[0])
		return 2
	}
	tp, stopTracing, err := telemetry.Setup(ctx, "statebus", e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "statebus: tracing: %v\n", err)
		return 2
	}
	if tp != nil {
		e.tracer = tp
		defer func() {
			tctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := stopTracing(tctx); err != nil {
				fmt.Fprintf(e.stderr, "statebus: spans not exported: %v\n", err)
			}
		}()
	}
	return cmd.run(ctx, e, args[1:])
}

// globalFlagsFirst moves the flags every command has (--pipe-name,
// --server-uid, --url and the TLS files, --json) from before the command's
// name to just after it,
// so "statebus --pipe-name X health" works as "statebus health
// --pipe-name X".
func globalFlagsFirst(args []string) ([]string, error) {
	var global []string
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch name {
		case "json":
			global = append(global, args[i])
		case "h", "help":
			return nil, flag.ErrHelp
		case "pipe-name", "server-uid", "url", "tls-ca", "tls-cert", "tls-key":
			global = append(global, args[i])
			if !hasValue {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("flag needs an argument: %s", args[i])
				}
				i++
				global = append(global, args[i])
			}
		default:
			return nil, fmt.Errorf("flag %s before the command: only --pipe-name, --server-uid, --url, --tls-ca, --tls-cert, --tls-key and --json may come before it", args[i])
		}
	}
	if i == len(args) {
		return nil, errors.New("no command after the flags")
	}
	if len(global) == 0 {
		return args, nil
	}
	out := append([]string{args[i]}, global...)
	return append(out, args[i+1:]...), nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: statebus [--pipe-name NAME | --url URL [--tls-ca FILE --tls-cert FILE --tls-key FILE]] [--server-uid USER] [--json] COMMAND [flags]")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --pipe-name (env STATEBUS_PIPE_NAME), --server-uid (env")
	fmt.Fprintln(w, "STATEBUS_SERVER_UID: the user that must serve the socket, besides root), --json")
	fmt.Fprintln(w, "and --help; --pipe-name, --server-uid and --json may also come before COMMAND.")
	fmt.Fprintln(w, "To reach a statebusd on another host, every command also takes --url tls://HOST:PORT")
	fmt.Fprintln(w, "with --tls-ca, --tls-cert and --tls-key (env STATEBUS_URL, STATEBUS_TLS_CA,")
	fmt.Fprintln(w, "STATEBUS_TLS_CLIENT_CERT, STATEBUS_TLS_CLIENT_KEY); see docs/remote.md.")
	fmt.Fprintln(w, "Example: statebus send machine-b PING '{\"Message\":\"Hello\"}'")
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
