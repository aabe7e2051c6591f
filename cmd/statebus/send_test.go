package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
)

func TestSend(t *testing.T) {
	flag, opt := startBus(t)
	b := dial(t, "machine-b", opt)
	got := make(chan statebus.Event, 1)
	b.OnEvent("PING", func(ev statebus.Event) { got <- ev })

	// Flags may come before, between or after the arguments.
	r := runCmd(t, "", append([]string{"send", "--as", "machine-a"}, args(flag, "machine-b", "PING", `{"Message":"Hello"}`)...)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "✓ PING delivered to machine-b (acknowledged in ")
	select {
	case ev := <-got:
		if ev.Source != "machine-a" || string(ev.Payload) != `{"Message":"Hello"}` {
			t.Errorf("received %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PING never arrived")
	}
}

func TestSendJSON(t *testing.T) {
	flag, opt := startBus(t)
	dial(t, "machine-b", opt)
	r := runCmd(t, "", args(flag, "send", "machine-b", "PING", "--json")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	var doc sendResult
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&doc); err != nil || dec.More() {
		t.Fatalf("not one JSON document (%v):\n%s", err, r.stdout)
	}
	if !doc.OK || doc.Target != "machine-b" || doc.Event != "PING" || !strings.HasPrefix(doc.Source, "statebus-cli-") {
		t.Errorf("document: %+v", doc)
	}
}

func TestSendErrors(t *testing.T) {
	flag, opt := startBus(t)
	dial(t, "taken", opt)
	missing := noBus()
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"target not connected", args(flag, "send", "nobody", "PING"), 1,
			[]string{"✗ Target machine not connected: nobody\n", "statebus machines"}},
		{"id in use", args(flag, "send", "--as", "taken", "nobody", "PING"), 1,
			[]string{"✗ Machine id already in use: taken\n", "--as"}},
		{"no service", []string{"send", "--pipe-name", missing, "x", "PING"}, 1,
			[]string{"cannot connect to " + missing + ": is statebusd running?", "Start it with 'statebusd --pipe-name " + missing + "'"}},
		{"bad payload", args(flag, "send", "x", "PING", "{not json"), 2,
			[]string{"payload {not json is not valid JSON", `'{"Message":"Hello"}'`}},
		{"missing event", args(flag, "send", "x"), 2,
			[]string{"expected TARGET EVENT [JSON-PAYLOAD]"}},
		{"extra argument", args(flag, "send", "x", "PING", "{}", "more"), 2,
			[]string{`unexpected argument "more"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, "", tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			wantLines(t, r.stderr, tc.stderr...)
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
		})
	}

	// A fresh --as: the service releases the default id of the runs
	// above when it notices their connections closed, not before.
	r := runCmd(t, "", args(flag, "send", "--as", "json-sender", "nobody", "PING", "--json")...)
	var doc jsonError
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 1 ||
		doc.OK || doc.Error != "Target machine not connected: nobody" {
		t.Errorf("--json failure: exit %d, %q", r.code, r.stdout)
	}
}

// A "--" ends the flags, so a payload may start with a dash.
func TestSendDoubleDash(t *testing.T) {
	flag, opt := startBus(t)
	b := dial(t, "machine-b", opt)
	got := make(chan statebus.Event, 1)
	b.OnEvent("N", func(ev statebus.Event) { got <- ev })
	r := runCmd(t, "", append(args(flag, "send"), "--", "machine-b", "N", "-5")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case ev := <-got:
		if string(ev.Payload) != "-5" {
			t.Errorf("payload %s", ev.Payload)
		}
	case <-ctx.Done():
		t.Fatal("event never arrived")
	}
}

// The acknowledgement says what the service did: how many got a
// broadcast (0 is a failure), which member of a group, which machine a
// redirect reached.
func TestSendAck(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.Routes = []router.RouteRule{{Match: router.RuleMatch{TargetMachineId: "billing"}, Action: "redirect", To: "billing-v2"}}
	})
	flag, opt := []string{"--pipe-name", srv.Addr()}, statebus.WithPipeName(srv.Addr())
	// The service counts a CLI run's connection out when it notices, and
	// until then it would count among a broadcast's recipients.
	settle := func(n int) {
		bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == n },
			"connections never settled at %d", n)
	}

	r := runCmd(t, "", args(flag, "send", "--as", "alone", "*", "PING")...)
	if r.code != 1 {
		t.Errorf("broadcast to nobody: exit %d", r.code)
	}
	wantLines(t, r.stdout, "✗ PING reached no one: no other machine is subscribed for *")
	settle(0)
	r = runCmd(t, "", args(flag, "send", "--as", "alone2", "*", "PING", "--json")...)
	var doc sendResult
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 1 || doc.OK ||
		doc.Recipients == nil || *doc.Recipients != 0 {
		t.Errorf("--json broadcast to nobody: exit %d %s", r.code, r.stdout)
	}

	settle(0)
	dial(t, "billing-v2", opt)
	w := dial(t, "w1", opt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.JoinGroup(ctx, "workers"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target, text, to string
		recipients       int
	}{
		{"*", "✓ PING delivered to 2 machines (*)", "*", 2},
		{"billing", "✓ PING delivered to billing-v2 (redirected from billing by a routing rule)", "billing-v2", -1},
		{"@workers", "✓ PING delivered to w1 (member of workers)", "w1", -1},
		{"w1", "✓ PING delivered to w1 (", "w1", -1},
	} {
		t.Run(tc.target, func(t *testing.T) {
			settle(2)
			r := runCmd(t, "", args(flag, "send", "--as", "s-text", tc.target, "PING")...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			wantLines(t, r.stdout, tc.text)
			settle(2)
			r = runCmd(t, "", args(flag, "send", "--as", "s-json", tc.target, "PING", "--json")...)
			var doc sendResult
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 || !doc.OK || doc.DeliveredTo != tc.to ||
				(tc.recipients < 0) != (doc.Recipients == nil) || (doc.Recipients != nil && *doc.Recipients != tc.recipients) {
				t.Errorf("--json: exit %d %s", r.code, r.stdout)
			}
		})
	}
}
