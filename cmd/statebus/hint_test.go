package main

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// A running service that refuses gets its own hint, never "Start it".
func TestHintsForARunningService(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxConnections = 2
		c.Access = access.Policy{Rules: []access.Rule{{UID: os.Getuid(), SendTo: []string{"ok-*"}}}}
	})
	flag := []string{"--pipe-name", srv.Addr()}
	r := runCmd(t, "", args(flag, "send", "nope", "E")...)
	wantLines(t, r.stderr, "✗ Access denied: uid ", "its access rules (MessageBus.Access in its config) do not allow this")

	opt := statebus.WithPipeName(srv.Addr())
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 0 }, "never 0 connections")
	dial(t, "a", opt)
	dial(t, "b", opt)
	r = runCmd(t, "", args(flag, "send", "ok-1", "E")...)
	if r.code != 1 {
		t.Errorf("full: exit %d", r.code)
	}
	wantLines(t, r.stderr, "✗ Too many connections (limit 2)\n", "statebusd is running but full", "MaxConnections")

	// Permission to open the socket is the kernel's: as root the test
	// cannot be refused, so it gives the error Dial returns.
	err := &statebus.DialError{Path: srv.Addr(), Err: &net.OpError{Op: "dial", Net: "unix",
		Err: os.NewSyscallError("connect", syscall.EACCES)}}
	e, _, errOut := newEnv("")
	f := newFlags(e, "send", "", "", "")
	failure(e, f, err)
	wantLines(t, errOut.String(), "permission denied", "your user may not open its socket "+f.socket())
	for _, s := range []string{r.stderr, errOut.String()} {
		if strings.Contains(s, "Start it with") {
			t.Errorf("blames a stopped service:\n%s", s)
		}
	}
}
