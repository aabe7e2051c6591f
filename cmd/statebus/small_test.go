package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// listen has no --as: its id-in-use hint does not offer one.
func TestListenIDInUseHint(t *testing.T) {
	flag, opt := startBus(t)
	dial(t, "taken", opt)
	r := runCmd(t, "", args(flag, "listen", "taken")...)
	wantLines(t, r.stderr, "✗ Machine id already in use: taken\n", "Another client holds that machine id.")
	if strings.Contains(r.stderr, "--as") {
		t.Errorf("offers --as on listen:\n%s", r.stderr)
	}
}

// --json on listen: the events are JSON lines either way, and a failure
// is a JSON document on stdout.
func TestListenJSONFailure(t *testing.T) {
	flag, opt := startBus(t)
	dial(t, "taken", opt)
	r := runCmd(t, "", args(flag, "listen", "taken", "--json")...)
	var doc jsonError
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 1 || doc.Error != "Machine id already in use: taken" {
		t.Errorf("exit %d, %q", r.code, r.stdout)
	}
	h := runCmd(t, "", "listen", "--help")
	if strings.Contains(h.stdout, "--json changes nothing") {
		t.Errorf("help says --json changes nothing")
	}
}

// The flags every command has may come before its name.
func TestGlobalFlagsBeforeCommand(t *testing.T) {
	srv := bustest.Start(t, nil)
	for _, a := range [][]string{
		{"--pipe-name", srv.Addr(), "health"},
		{"--pipe-name=" + srv.Addr(), "--json", "health"},
		{"-pipe-name", srv.Addr(), "health", "--timeout", "5s"},
	} {
		// --json escapes the backslashes of a Windows pipe name.
		addr, _ := json.Marshal(srv.Addr())
		if r := runCmd(t, "", a...); r.code != 0 ||
			!strings.Contains(r.stdout, srv.Addr()) && !strings.Contains(r.stdout, strings.Trim(string(addr), `"`)) {
			t.Errorf("%v: exit %d: %s%s", a, r.code, r.stdout, r.stderr)
		}
	}
	if r := runCmd(t, "", "--pipe-name", srv.Addr(), "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: statebus ") {
		t.Errorf("--help after a global flag: exit %d: %s", r.code, r.stderr)
	}
	for a, want := range map[string][]string{
		"flag --as before the command": {"--as", "x", "send"},
		"flag needs an argument":       {"--pipe-name"},
		"no command after the flags":   {"--json"},
	} {
		if r := runCmd(t, "", want...); r.code != 2 || !strings.Contains(r.stderr, a) {
			t.Errorf("%v: exit %d: %s", want, r.code, r.stderr)
		}
	}
}

// A target no machine can have is an invalid id, not "not connected".
func TestInvalidTarget(t *testing.T) {
	flag, _ := startBus(t)
	for _, tc := range []struct {
		cmd, target, want string
	}{
		{"send", "", "✗ Invalid machine id: must not be empty\n"},
		{"send", strings.Repeat("x", 300), "✗ Invalid machine id: longer than 256 bytes\n"},
		{"send", "@", `✗ Invalid machine id: "@" needs a group name after it`},
		{"request", "", "✗ Invalid machine id: must not be empty\n"},
	} {
		r := runCmd(t, "", args(flag, tc.cmd, tc.target, "E")...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "not connected") {
			t.Errorf("%s %q: exit %d: %s", tc.cmd, tc.target, r.code, r.stderr)
		}
	}
}

// A payload nested deeper than the service takes names the limit.
func TestPayloadTooDeep(t *testing.T) {
	flag, opt := startBus(t)
	dial(t, "deep", opt)
	deep := strings.Repeat("[", 70) + strings.Repeat("]", 70)
	r := runCmd(t, "", args(flag, "send", "deep", "E", deep)...)
	// The service says so (the compact framing leaves the check to it);
	// over JSON lines the client does, before writing.
	if r.code == 0 || !strings.Contains(r.stderr, "JSON nested deeper than 64 levels: the payload nests more than 62 levels deep, the most an event's payload may") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

// request --timeout expiry says which target did not answer.
func TestRequestTimeoutNamesTarget(t *testing.T) {
	flag, opt := startBus(t)
	slow := dial(t, "slow", opt)
	release := make(chan struct{})
	defer close(release)
	slow.HandleRequest("Q", func(context.Context, statebus.Event) (any, error) {
		<-release // past the caller's deadline
		return nil, nil
	})
	start := time.Now()
	r := runCmd(t, "", args(flag, "request", "--timeout", "300ms", "slow", "Q")...)
	if r.code != 1 || time.Since(start) > 10*time.Second {
		t.Errorf("exit %d after %v", r.code, time.Since(start))
	}
	wantLines(t, r.stderr, "✗ no reply from slow to Q within --timeout 300ms\n", "  slow took the request but its handler did not answer in time")
	if strings.Contains(r.stderr, "overloaded") {
		t.Errorf("blames the service:\n%s", r.stderr)
	}
}
