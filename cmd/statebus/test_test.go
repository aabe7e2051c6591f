package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
)

func TestTestPing(t *testing.T) {
	flag, _ := startBus(t)
	r := runCmd(t, "", args(flag, "test", "ping")...)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		"✓ Test Complete! Received 5/5 PONGs\n",
		"✓ Bidirectional communication working\n",
		"✓ Clean shutdown with no exceptions\n")
}

func TestTestMulti(t *testing.T) {
	flag, _ := startBus(t)
	r := runCmd(t, "", args(flag, "test", "multi")...)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := "✓ Total: 20/20 messages delivered\n" +
		"  client-1: received 4/4 broadcasts ✓\n" +
		"  client-2: received 4/4 broadcasts ✓\n" +
		"  client-3: received 4/4 broadcasts ✓\n" +
		"  client-4: received 4/4 broadcasts ✓\n" +
		"  client-5: received 4/4 broadcasts ✓\n"
	wantLines(t, r.stdout, want)
}

func TestTestStress(t *testing.T) {
	flag, _ := startBus(t)
	r := runCmd(t, "", args(flag, "test", "stress", "--messages", "1000")...)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "✓ Sent: 1000 messages\n", "✓ Received: 1000 messages\n")
	for _, re := range []string{
		`(?m)^✓ Time: [0-9.]+ms$`,
		`(?m)^✓ Throughput: [0-9,]+ msg/sec$`,
		`(?m)^✓ Latency: p50 [0-9.]+ms, p99 [0-9.]+ms, max [0-9.]+ms per message \(send to receive\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("output does not match %s:\n%s", re, r.stdout)
		}
	}
}

// Two runs at once share a bus: their machine ids do not collide.
func TestTestConcurrentRuns(t *testing.T) {
	flag, _ := startBus(t)
	codes := make(chan result, 2)
	for range 2 {
		go func() {
			e, out, errOut := newEnv("")
			code := run(context.Background(), e, args(flag, "test", "multi"))
			codes <- result{code, out.String(), errOut.String()}
		}()
	}
	for range 2 {
		if r := <-codes; r.code != 0 {
			t.Errorf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
}

func TestTestJSON(t *testing.T) {
	flag, _ := startBus(t)
	for _, tc := range []struct {
		scenario string
		check    func(m map[string]any) bool
	}{
		{"ping", func(m map[string]any) bool { return m["pongs_received"] == 5.0 && m["clean_shutdown"] == true }},
		{"multi", func(m map[string]any) bool { return m["delivered"] == 20.0 && len(m["clients"].([]any)) == 5 }},
		{"stress", func(m map[string]any) bool {
			lat := m["latency_ms"].(map[string]any)
			return m["received"] == 500.0 && m["lost"] == 0.0 && m["in_order"] == true &&
				m["msgs_per_sec"].(float64) > 0 && lat["p50"].(float64) <= lat["p99"].(float64) &&
				lat["p99"].(float64) <= lat["max"].(float64)
		}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			r := runCmd(t, "", args(flag, "test", tc.scenario, "--json", "--messages", "500")...)
			var m map[string]any
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			if err := dec.Decode(&m); err != nil || dec.More() {
				t.Fatalf("not one JSON document (%v):\n%s", err, r.stdout)
			}
			if r.code != 0 || m["ok"] != true || m["scenario"] != tc.scenario || !tc.check(m) {
				t.Errorf("exit %d: %s", r.code, r.stdout)
			}
		})
	}
}

func TestTestNoService(t *testing.T) {
	path := noBus()
	for _, scenario := range []string{"ping", "multi", "stress"} {
		t.Run(scenario, func(t *testing.T) {
			r := runCmd(t, "", "test", scenario, "--pipe-name", path)
			if r.code != 1 {
				t.Errorf("exit %d", r.code)
			}
			wantLines(t, r.stdout, "✗ ", "is statebusd running?")
		})
	}
	r := runCmd(t, "", "test", "custom", "--pipe-name", path)
	if r.code != 1 {
		t.Errorf("custom: exit %d", r.code)
	}
	wantLines(t, r.stdout, "✗ cannot connect to "+path+": is statebusd running?")
}

func TestTestUsage(t *testing.T) {
	if r := runCmd(t, "", "test"); r.code != 2 || !strings.Contains(r.stderr, "expected ping | multi") {
		t.Errorf("no scenario: %+v", r)
	}
	if r := runCmd(t, "", "test", "pong"); r.code != 2 || !strings.Contains(r.stderr, `unknown scenario "pong"`) {
		t.Errorf("unknown scenario: %+v", r)
	}
	if r := runCmd(t, "", "test", "stress", "--messages", "0"); r.code != 2 {
		t.Errorf("--messages 0: %+v", r)
	}
}

func TestTestCustom(t *testing.T) {
	flag, opt := startBus(t)
	// A peer that answers PING with PONG.
	peer := dial(t, "peer", opt)
	peer.OnEvent("PING", func(ev statebus.Event) {
		peer.PostEvent(context.Background(), ev.Source, "PONG", ev.Payload)
	})
	stdin := "send peer PING hello  there\n" +
		"wait PONG\n" +
		"send me SELF\n" +
		"wait SELF\n" +
		"send * ALL\n" +
		"quit\n" +
		"send peer PING never sent\n"
	r := runCmd(t, stdin, args(flag, "test", "custom", "--as", "me")...)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		"Custom mode: connected as me on ",
		"✓ PING delivered to peer\n",
		`← PONG from peer: {"Message":"hello  there"}`,
		"✓ PONG arrived\n",
		"✓ SELF delivered to me\n",
		"← SELF from me: null\n",
		"✓ SELF arrived\n",
		"✓ ALL delivered to 1 machine (*)\n")
	if strings.Contains(r.stdout, "never sent") {
		t.Errorf("read past quit:\n%s", r.stdout)
	}
}

func TestTestCustomFailures(t *testing.T) {
	flag, _ := startBus(t)
	stdin := "send nobody PING\n" + "frobnicate\n" + "send me OK\n" // then end of input
	r := runCmd(t, stdin, args(flag, "test", "custom", "--as", "me", "--json")...)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	wantLines(t, r.stderr,
		"✗ Target machine not connected: nobody\n",
		`✗ cannot read "frobnicate": use send <target> <event> [message], wait <event> or quit`,
		"✓ OK delivered to me\n")
	var doc customJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if doc.OK || doc.Sent != 1 || doc.Failed != 2 || doc.ID != "me" ||
		len(doc.Errors) != 2 || doc.Errors[0] != "Target machine not connected: nobody" {
		t.Errorf("document: %+v", doc)
	}
}

// wait gives up after its limit rather than hanging; the context here is
// what ends it.
func TestTestCustomCanceled(t *testing.T) {
	flag, _ := startBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	e, out, _ := newEnv("wait NOTHING\n")
	code := run(ctx, e, args(flag, "test", "custom", "--as", "me"))
	if code != 1 || !strings.Contains(out.String(), "✗ no NOTHING arrived") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
