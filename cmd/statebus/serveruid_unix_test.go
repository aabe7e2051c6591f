//go:build linux || darwin || freebsd

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// TestServerUID: every command that connects refuses a bus served by
// another user, says how to trust it, and trusts it given --server-uid or
// STATEBUS_SERVER_UID.
func TestServerUID(t *testing.T) {
	if os.Geteuid() != 0 {
		srv := bustest.Start(t, nil)
		r := runCmd(t, "", "health", "--pipe-name", srv.Addr(), "--server-uid", fmt.Sprint(os.Geteuid()+1))
		if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("the socket is served by uid %d", os.Geteuid())) {
			t.Fatalf("health expecting another uid: exit %d\n%s", r.code, r.stderr)
		}
		t.Skip("not root: the impostor run as uid 65534 needs root")
	}
	dir, err := os.MkdirTemp("", "sbimp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bus.sock")
	bustest.StartImpostor(t, dir, path)

	refused := fmt.Sprintf("refusing server on %s: the socket is served by uid 65534, expected 0;", path)
	for _, cmd := range [][]string{
		{"health"}, {"machines"}, {"send", "x", "E"}, {"request", "x", "Q"}, {"listen", "x"},
		{"test", "ping"}, {"bench", "--msgs", "10"},
	} {
		r := runCmd(t, "", append(cmd, "--pipe-name", path)...)
		if r.code != 1 || !strings.Contains(r.stderr+r.stdout, refused) {
			t.Errorf("%v: exit %d, want 1 and %q\nstdout:\n%s\nstderr:\n%s", cmd, r.code, refused, r.stdout, r.stderr)
		}
	}
	r := runCmd(t, "", "health", "--pipe-name", path)
	wantLines(t, r.stderr, "If that user runs your statebusd, say so with --server-uid UID (or STATEBUS_SERVER_UID)")

	for _, r := range []result{
		runCmd(t, "", "health", "--pipe-name", path, "--server-uid", "65534"),
		runCmd(t, "", "health", "--pipe-name", path, "--server-uid", "nobody"),
		runCmdEnv(t, map[string]string{"STATEBUS_SERVER_UID": "65534"}, "health", "--pipe-name", path),
		runCmdEnv(t, map[string]string{"STATEBUS_SERVER_UID": "65534"}, "send", "--pipe-name", path, "--as", "s", "s", "E"),
	} {
		if r.code != 0 {
			t.Errorf("trusting uid 65534: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
}
