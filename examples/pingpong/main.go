// Command pingpong runs the seed's ping/pong pair, two XStateNet scripts
// (ping.json and pong.json), under package orchestrator: in two processes,
// or both in one, with the same code. Only where the machines are hosted
// changes; the orchestrator finds each by id, in this process or on the
// bus.
//
//	statebusd &
//	pingpong pong &        # hosts pong, until ping tells it to STOP
//	pingpong ping          # hosts ping: 5 PINGs to pong, 5 PONGs back
//	pingpong both          # the same two machines in one process
//	pingpong --local both  # in one process without statebusd
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

var (
	//go:embed ping.json
	pingScript []byte
	//go:embed pong.json
	pongScript []byte
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pingpong", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pingpong [flags] ping|pong|both")
		fs.PrintDefaults()
	}
	pipe := fs.String("pipe-name", "", "the bus's pipe name or socket path (default $STATEBUS_PIPE_NAME, else XStateNet.MessageBus)")
	count := fs.Int("count", 5, "how many PINGs ping sends")
	local := fs.Bool("local", false, "no bus: both machines in this process only (with both)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	roles := map[string][]string{"ping": {"ping"}, "pong": {"pong"}, "both": {"pong", "ping"}}[fs.Arg(0)]
	if roles == nil || *local && len(roles) != 2 {
		fs.Usage()
		return 2
	}
	if err := play(ctx, roles, *pipe, *count, *local, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "pingpong:", err)
		return 1
	}
	return 0
}

// play hosts the machines of roles and runs until the last of them is
// done: ping once it had count PONGs, pong once ping told it to STOP.
func play(ctx context.Context, roles []string, pipe string, count int, local bool, stdout, stderr io.Writer) error {
	var mu sync.Mutex // one line at a time from both machines
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(stdout, format+"\n", args...)
		mu.Unlock()
	}
	var opts []orchestrator.Option
	if !local {
		var bus []statebus.Option
		if pipe != "" {
			bus = append(bus, statebus.WithPipeName(pipe))
		}
		opts = append(opts, orchestrator.WithBus(bus...))
	}
	// What no call returns (a PONG to a sender that has gone, say) is
	// worth a line, not the end of the game.
	opts = append(opts, orchestrator.WithErrorHandler(func(err error) {
		mu.Lock()
		fmt.Fprintln(stderr, "pingpong:", err)
		mu.Unlock()
	}))
	o := orchestrator.New(opts...)
	defer o.Close()

	done := make(map[string]chan struct{})
	for _, role := range roles {
		def, err := load(role, say)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = o.Register(rctx, role, def, statechart.WithContext(map[string]any{"count": 0, "maxCount": count, "peer": "pong"}))
		cancel()
		if err != nil {
			return err
		}
		ch := make(chan struct{})
		done[role] = ch
		o.Machine(role).Subscribe(func(s statechart.Step) {
			if s.To == "#"+role+".done" {
				close(ch)
			}
		})
	}
	if _, ok := done["ping"]; ok {
		res, err := o.Send(ctx, "ping", "ping", "START", nil)
		if err != nil {
			return err
		}
		say("ping: START -> %s", res.NewState)
	}
	for _, role := range roles {
		select {
		case <-done[role]:
		case <-ctx.Done():
			return errors.New("interrupted")
		}
	}
	return nil
}

// load reads a role's script with its actions, which say what they do.
func load(role string, say func(string, ...any)) (*statechart.Definition, error) {
	count := func(s *statechart.Scope) int {
		n, _ := s.Context["count"].(float64)
		if i, ok := s.Context["count"].(int); ok {
			n = float64(i)
		}
		return int(n)
	}
	increment := func(s *statechart.Scope) error {
		s.Context["count"] = count(s) + 1
		return nil
	}
	switch role {
	case "ping":
		return statechart.Load(pingScript, statechart.Implementations{
			Actions: map[string]statechart.Action{
				"incrementCount": increment,
				"sendPing": func(s *statechart.Scope) error {
					s.Send(s.Context["peer"].(string), "PING", map[string]int{"n": count(s)})
					return nil
				},
				"onDone": func(s *statechart.Scope) error {
					say("ping: got %d PONGs, telling %s to STOP", count(s), s.Context["peer"])
					s.Send(s.Context["peer"].(string), "STOP", nil)
					return nil
				},
			},
			Guards: map[string]statechart.Guard{
				"isMaxReached": func(s *statechart.Scope) bool {
					max, _ := s.Context["maxCount"].(int)
					return count(s) >= max
				},
			},
		}, statechart.WithFilename("ping.json"))
	case "pong":
		return statechart.Load(pongScript, statechart.Implementations{
			Actions: map[string]statechart.Action{
				"incrementCount": increment,
				"sendPong": func(s *statechart.Scope) error {
					say("pong: %s %s from %s", s.Event.Name, s.Event.Data, s.Event.Origin)
					s.Send(s.Event.Origin, "PONG", s.Event.Data)
					return nil
				},
			},
		}, statechart.WithFilename("pong.json"))
	}
	return nil, fmt.Errorf("no machine %q", role)
}
