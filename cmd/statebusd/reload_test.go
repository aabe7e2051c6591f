//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/statebus/statebus"
)

// TestReload changes the config file under a running statebusd process
// and sends SIGHUP: open connections stay up, the new log levels apply at
// once, the new access rules apply to new connections, settings that need
// a restart are named, and a broken file changes nothing.
func TestReload(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "appsettings.json")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"Logging": {"LogLevel": {"Default": "Information"}}, "MessageBus": {"MaxConnections": 20}}`)
	path := filepath.Join(dir, "bus.sock")
	d := startDaemon(t, []string{"--config", cfg, "--pipe-name", path, "--log-format", "json"}, nil)

	ctx := context.Background()
	early, err := statebus.Dial(ctx, "early", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	peer, err := statebus.Dial(ctx, "peer", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if d.find(t, "registered") != nil {
		t.Fatal("a Debug record at Information")
	}

	// Only sensor-* for our own uid from now on, server logs at Debug, and
	// a limit that needs a restart.
	write(fmt.Sprintf(`{"Logging": {"LogLevel": {"Default": "Information", "statebus.server": "Debug"}},
	  "MessageBus": {"MaxConnections": 30, "Access": {"Rules": [{"Uid": %d, "Register": ["sensor-*"]}]},
	    "Routes": [{"Match": {"EventName": "DEBUG_*"}, "Action": "drop", "Reason": "off"}]}}`, os.Getuid()))
	d.cmd.Process.Signal(syscall.SIGHUP)
	r := d.waitLog(t, "reloaded: log levels and access rules applied to new connections, routing rules to the next event")
	if lv, _ := r["levels"].(map[string]any); lv["statebus.server"] != "DEBUG" || lv["statebus.daemon"] != "INFO" || r["routes"] != 1.0 {
		t.Fatalf("reload record %v", r)
	}
	// The routing rules apply to the next event, on old connections too.
	if err := early.SendEvent(ctx, "peer", "DEBUG_X", nil); err == nil || err.Error() != "Event dropped: off" {
		t.Fatalf("event after the routing rules reload: %v", err)
	}
	if w := d.find(t, "reload: some settings change only on restart"); w == nil || fmt.Sprint(w["settings"]) != "[MaxConnections]" {
		t.Fatalf("restart warning %v", w)
	}

	// The connections made before are still up and keep their rules.
	if err := early.SendEvent(ctx, "peer", "AFTER_RELOAD", nil); err != nil {
		t.Fatalf("connection made before SIGHUP: %v", err)
	}
	// New connections get the new rules.
	if _, err := statebus.Dial(ctx, "intruder", statebus.WithPipeName(path)); err == nil ||
		!strings.Contains(err.Error(), "Access denied") {
		t.Fatalf("registering intruder after the reload: %v", err)
	}
	s1, err := statebus.Dial(ctx, "sensor-1", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	// ... and the server's Debug records now appear.
	if r := d.waitLog(t, "registered"); r["machine"] == nil || r["category"] != "statebus.server" || r["level"] != "DEBUG" {
		t.Fatalf("debug record %v", r)
	}

	// A file that does not load changes nothing.
	write(`{"MessageBus": `)
	d.cmd.Process.Signal(syscall.SIGHUP)
	r = d.waitLog(t, "reload failed; the running configuration stays")
	if !strings.Contains(fmt.Sprint(r["err"]), "is not valid") {
		t.Fatalf("reload failure record %v", r)
	}
	if _, err := statebus.Dial(ctx, "intruder", statebus.WithPipeName(path)); err == nil {
		t.Fatal("the failed reload dropped the access rules")
	}
	if err := s1.SendEvent(ctx, "peer", "STILL_SERVING", nil); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
}
