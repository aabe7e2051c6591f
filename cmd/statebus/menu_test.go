package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

func TestMenu(t *testing.T) {
	flag, _ := startBus(t)
	stdin := "1\n2\n3\n1000\n4\nsend me HELLO hi\nwait HELLO\nquit\n9\n5\n1\n"
	r := runCmd(t, stdin, args(flag, "menu", "--as", "me")...)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		"1. Ping-Pong test\n2. Multi-client broadcast\n3. Stress test\n4. Custom\n5. Exit\nChoose 1-5: ",
		"✓ Test Complete! Received 5/5 PONGs\n",
		"✓ Total: 20/20 messages delivered\n",
		"  client-5: received 4/4 broadcasts ✓\n",
		"Messages [100]: ",
		"✓ Sent: 1000 messages\n",
		"✓ Received: 1000 messages\n",
		`← HELLO from me: {"Message":"hi"}`,
		`✗ "9" is not on the menu: enter a number from 1 to 5`)
	// 5 ends the menu: the "1" after it is not run.
	if n := strings.Count(r.stdout, "Test Complete!"); n != 1 {
		t.Errorf("ping ran %d times:\n%s", n, r.stdout)
	}
}

func TestMenuEndOfInput(t *testing.T) {
	flag, _ := startBus(t)
	r := runCmd(t, "3\n\n", args(flag, "menu")...)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "✓ Sent: 100 messages\n", "✓ Received: 100 messages\n")
	// A bad count asks again, not the whole menu.
	r = runCmd(t, "3\nmany\n0\n50\n", args(flag, "menu")...)
	if r.code != 0 || !strings.Contains(r.stdout, `✗ "many" is not a number of messages`) ||
		!strings.Contains(r.stdout, `✗ "0" is not a number of messages`) || !strings.Contains(r.stdout, "✓ Received: 50 messages\n") {
		t.Errorf("bad count: exit %d:\n%s", r.code, r.stdout)
	}
	if n := strings.Count(r.stdout, "Messages [100]: "); n != 3 {
		t.Errorf("asked for the count %d times, want 3:\n%s", n, r.stdout)
	}
}

// Ctrl-C at a prompt ends the menu with 130, as a shell reports SIGINT.
func TestMenuInterrupted(t *testing.T) {
	flag, _ := startBus(t)
	for _, input := range []string{"", "3\n"} { // at the menu, at the count
		stdin, w := io.Pipe()
		defer w.Close()
		go w.Write([]byte(input))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		e, out, _ := newEnv("")
		e.stdin = stdin
		if code := run(ctx, e, args(flag, "menu")); code != exitInterrupted {
			t.Errorf("input %q: exit %d, want %d:\n%s", input, code, exitInterrupted, out)
		}
		cancel()
	}
}

func TestMenuJSON(t *testing.T) {
	flag, _ := startBus(t)
	r := runCmd(t, "1\n2\n", args(flag, "menu", "--json")...)
	var doc struct {
		OK   bool
		Runs []map[string]any
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v:\n%s", r.code, err, r.stdout)
	}
	if !doc.OK || len(doc.Runs) != 2 || doc.Runs[0]["scenario"] != "ping" || doc.Runs[1]["scenario"] != "multi" {
		t.Errorf("document: %+v", doc)
	}
	wantLines(t, r.stderr, "Choose 1-5: ")
}

func TestMenuFailureExitCode(t *testing.T) {
	r := runCmd(t, "1\n", "menu", "--pipe-name", noBus())
	if r.code != 1 {
		t.Errorf("exit %d, want 1:\n%s", r.code, r.stdout)
	}
}
