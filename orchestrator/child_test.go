package orchestrator_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

// The test binary runs again as a child process that hosts one machine:
// ORCHESTRATOR_TEST_CHILD names its script (pong or counter),
// ORCHESTRATOR_TEST_ID its id and ORCHESTRATOR_TEST_PIPE the bus. It says
// "ready" once the machine is registered, and closes the orchestrator when
// its stdin ends.
const (
	childEnv   = "ORCHESTRATOR_TEST_CHILD"
	childID    = "ORCHESTRATOR_TEST_ID"
	childPipe  = "ORCHESTRATOR_TEST_PIPE"
	childReady = "ready"
)

func child(role string) int {
	if role == "responder" {
		return responder()
	}
	var def *statechart.Definition
	var err error
	opts := []statechart.Option{}
	switch role {
	case "pong":
		var b []byte
		if b, err = os.ReadFile("../examples/pingpong/pong.json"); err == nil {
			def, err = statechart.Load(b, pongImpl)
		}
	case "toggle":
		def, err = statechart.Load([]byte(toggleScript), statechart.Implementations{})
	case "counter":
		def, err = statechart.Load([]byte(counterScript), counterImpl)
		opts = append(opts, statechart.WithContext(map[string]any{"next": 0, "echo": true}))
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	o := orchestrator.New(
		orchestrator.WithBus(statebus.WithPipeName(os.Getenv(childPipe))),
		orchestrator.WithErrorHandler(func(err error) { fmt.Fprintln(os.Stderr, "child:", err) }))
	defer o.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Register(ctx, os.Getenv(childID), def, opts...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(childReady)
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// startChild runs the test binary as a child hosting a role's machine
// as id on pipe, and returns once it is registered. The child ends when
// the test does.
func startChild(t testing.TB, role, id, pipe string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childID+"="+id, childPipe+"="+pipe)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(exited)
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != childReady {
			<-exited
			t.Fatalf("child %s: %q; stderr:\n%s", role, line, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("child %s not ready after 30s", role)
	}
	return cmd
}

// kill ends a child at once, as a crash would.
func kill(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// responder is a plain client that answers every request at once: the
// baseline for the orchestrated round trip.
func responder() int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := statebus.Dial(ctx, os.Getenv(childID), statebus.WithPipeName(os.Getenv(childPipe)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	reply := orchestrator.EventResult{Success: true, NewState: "#t.a", ProcessedBy: c.ID()}
	c.HandleRequest("*", func(context.Context, statebus.Event) (any, error) { return reply, nil })
	fmt.Println(childReady)
	io.Copy(io.Discard, os.Stdin)
	return 0
}
