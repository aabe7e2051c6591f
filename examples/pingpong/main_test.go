package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus/internal/bustest"
)

// TestMain runs the test binary as the program itself when PINGPONG_ARGS
// is set: the second process of TestTwoProcesses.
func TestMain(m *testing.M) {
	if args := os.Getenv("PINGPONG_ARGS"); args != "" {
		os.Exit(run(context.Background(), strings.Fields(args), os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m, bustest.IgnoreWinio)
}

// want is what a game of n PINGs prints, line by line, in any order
// between the machines.
func want(n int) []string {
	var lines []string
	for i := 1; i <= n; i++ {
		lines = append(lines, fmt.Sprintf(`pong: PING {"n":%d} from ping`, i))
	}
	return append(lines, "ping: START -> #ping.pinging", fmt.Sprintf("ping: got %d PONGs, telling pong to STOP", n))
}

func checkLines(t *testing.T, out string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestTwoProcesses: pong in a process of its own, ping in this one,
// through a real service; pong's process ends when ping tells it to.
func TestTwoProcesses(t *testing.T) {
	srv := bustest.Start(t, nil)
	pong := exec.Command(os.Args[0], "-test.run=^$")
	pong.Env = append(os.Environ(), "PINGPONG_ARGS=--pipe-name "+srv.Addr()+" pong")
	var pongOut, pongErr bytes.Buffer
	pong.Stdout, pong.Stderr = &pongOut, &pongErr
	if err := pong.Start(); err != nil {
		t.Fatal(err)
	}
	defer pong.Process.Kill()
	bustest.Eventually(t, 10*time.Second, func() bool {
		for _, m := range srv.MachineInfos() {
			if m.MachineID == "pong" && m.State != "" {
				return true
			}
		}
		return false
	}, "pong never registered; its stderr: %s", &pongErr)

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--pipe-name", srv.Addr(), "--count", "7", "ping"}, &out, &errOut); code != 0 {
		t.Fatalf("ping: exit %d: %s", code, &errOut)
	}
	if err := pong.Wait(); err != nil {
		t.Fatalf("pong: %v: %s", err, &pongErr)
	}
	w := want(7)
	checkLines(t, out.String(), w[len(w)-2:])
	checkLines(t, pongOut.String(), w[:len(w)-2])
}

// TestOneProcess: the same two machines, the same code, in one process:
// on the bus, and without one.
func TestOneProcess(t *testing.T) {
	srv := bustest.Start(t, nil)
	for _, args := range [][]string{{"--pipe-name", srv.Addr(), "both"}, {"--local", "both"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, &errOut)
		}
		checkLines(t, out.String(), want(5))
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"--local", "ping"}, &bytes.Buffer{}, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage: pingpong") {
		t.Fatalf("--local ping: exit %d: %s", code, &errOut)
	}
}
