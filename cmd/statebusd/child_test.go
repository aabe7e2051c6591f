package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/wine"
)

// busPath returns a fresh address for a test's statebusd: a short socket
// path on Unix, a named pipe on Windows (bustest.SocketPath).
func busPath(t *testing.T) string { return bustest.SocketPath(t) }

// statebusdCmd is the test binary run as statebusd with args, as a child
// process; on Windows in a process group of its own, so that terminate
// can reach it alone.
func statebusdCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "STATEBUSD_TEST_MAIN=1")
	ownGroup(cmd)
	return cmd
}

// stopGracefully asks the child statebusd cmd to stop as SIGTERM does
// (terminate). Under Wine no console control event reaches a child (Wine
// 8 without a real console fails GenerateConsoleCtrlEvent with "Invalid
// access"), so there the child is killed and the test skipped, saying
// so: what it checks of a graceful stop is unverified on Windows.
func stopGracefully(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := terminate(cmd); err != nil {
		if wine.Running() {
			cmd.Process.Kill()
			t.Skipf("Wine cannot stop a child statebusd gracefully: GenerateConsoleCtrlEvent: %v (no real console); statebusd's graceful stop as a service (sc stop) is checked by packaging/wine/smoke.sh", err)
		}
		t.Fatalf("cannot ask statebusd to stop: %v", err)
	}
}
