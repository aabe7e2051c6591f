package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

func TestHealth(t *testing.T) {
	srv := bustest.Start(t, nil)
	flag, opt := []string{"--pipe-name", srv.Addr()}, statebus.WithPipeName(srv.Addr())
	dial(t, "machine-a", opt)
	// Only machine-a's connection: the service counts a closed connection
	// out when it notices, not when the client returns from Close.
	settled := func() {
		bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 1 },
			"connections never settled at 1")
	}
	settled()
	r := runCmd(t, "", args(flag, "health")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	wantLines(t, r.stdout,
		" is healthy\n",
		"  Version:             ",
		"  Connections:         2 (this one included, limit 100)\n",
		"  Peak connections:    2 at ",
		"  Registered machines: 1\n",
		"  Last activity:       ",
		"  Uptime:              ")

	settled()
	r = runCmd(t, "", args(flag, "health", "--json")...)
	var h healthResult
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || r.code != 0 {
		t.Fatalf("--json: exit %d, %v:\n%s", r.code, err, r.stdout)
	}
	if !h.IsHealthy || h.ConnectionCount != 2 || h.RegisteredMachines != 1 || h.PeakConnections < 2 ||
		h.LastActivityAt.IsZero() || h.UptimeSeconds <= 0 || h.Version == "" || h.Socket != flag[1] {
		t.Errorf("--json: %+v", h)
	}
}

func TestHealthUnreachable(t *testing.T) {
	path := noBus()
	r := runCmd(t, "", "health", "--pipe-name", path)
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	wantLines(t, r.stderr, "✗ cannot connect to "+path+": is statebusd running?")
	r = runCmd(t, "", "health", "--pipe-name", path, "--json")
	var doc jsonError
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 1 ||
		!strings.Contains(doc.Error, "is statebusd running?") {
		t.Errorf("--json: exit %d, %q", r.code, r.stdout)
	}
}

// A bus at its MaxConnections is full, not unhealthy: exit 3, either when
// health's own connection is the last one or when the service refuses it.
func TestHealthFull(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxConnections = 2 })
	flag, opt := []string{"--pipe-name", srv.Addr()}, statebus.WithPipeName(srv.Addr())
	dial(t, "machine-a", opt)
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 1 }, "never 1 connection")
	r := runCmd(t, "", args(flag, "health")...)
	if r.code != exitFull {
		t.Errorf("at the limit: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "is healthy but full: 2 of 2 connections (MaxConnections) are in use")
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 1 }, "never 1 connection")
	r = runCmd(t, "", args(flag, "health", "--json")...)
	var h healthResult
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || r.code != exitFull || !h.Full || !h.IsHealthy {
		t.Errorf("--json at the limit: exit %d %s", r.code, r.stdout)
	}

	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 1 }, "never 1 connection")
	dial(t, "machine-b", opt)
	r = runCmd(t, "", args(flag, "health")...)
	if r.code != exitFull {
		t.Errorf("over the limit: exit %d: %s", r.code, r.stderr)
	}
	wantLines(t, r.stderr, "✗ Too many connections (limit 2)", "statebusd is running but full")
	if strings.Contains(r.stderr, "Start it with") {
		t.Errorf("blames a stopped service:\n%s", r.stderr)
	}
}
