package main

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// startReply runs statebus reply with args until the test ends; it
// returns once the responder is registered.
func startReply(t *testing.T, srv interface{ Addr() string }, args ...string) (stop func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e, out, errOut := newEnv("")
	code := make(chan int, 1)
	go func() { code <- run(ctx, e, append([]string{"reply", "--pipe-name", srv.Addr()}, args...)) }()
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(errOut.String(), "press Ctrl-C") },
		"reply never started: %s", errOut.String())
	var r *result
	stop = func() result {
		if r == nil {
			cancel()
			r = &result{<-code, out.String(), errOut.String()}
		}
		return *r
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestReplyStatic(t *testing.T) {
	srv := bustest.Start(t, nil)
	stop := startReply(t, srv, "calc", "ADD", `{"Sum":5}`)
	r := runCmd(t, "", "request", "--as", "asker", "--pipe-name", srv.Addr(), "calc", "ADD", `{"A":2,"B":3}`)
	if r.code != 0 || r.stdout != "{\"Sum\":5}\n" {
		t.Fatalf("request: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	got := stop()
	if got.code != 0 {
		t.Errorf("reply exit %d: %s", got.code, got.stderr)
	}
	wantLines(t, got.stdout, `✓ ADD from asker {"A":2,"B":3} -> {"Sum":5}`)
	wantLines(t, got.stderr, "Answered 1 requests.")
}

func TestReplyCommand(t *testing.T) {
	// The commands run under sh -c, or cmd /C on Windows.
	cat, fail := "cat", "echo broken >&2; exit 3"
	if runtime.GOOS == "windows" {
		cat, fail = "more", "echo broken 1>&2 & exit 3"
	}
	srv := bustest.Start(t, nil)
	stop := startReply(t, srv, "echo", "*", "--json", "--command", cat)
	c := dial(t, "asker", statebus.WithPipeName(srv.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := c.Request(ctx, "echo", "ANY", json.RawMessage(`{"N":1}`))
	if err != nil || string(rep.Payload) != `{"N":1}` {
		t.Fatalf("echo: %s, %v", rep.Payload, err)
	}
	got := stop()
	var l replyLine
	if err := json.Unmarshal([]byte(got.stdout), &l); err != nil || l.Source != "asker" || l.Event != "ANY" ||
		string(l.Reply) != `{"N":1}` {
		t.Errorf("--json line %q: %v", got.stdout, err)
	}

	stop = startReply(t, srv, "fail", "Q", "--command", fail)
	_, err = c.Request(ctx, "fail", "Q", nil)
	var re *statebus.ResponderError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "exit status 3: broken") {
		t.Errorf("failing command: %v", err)
	}
	stop()

	stop = startReply(t, srv, "text", "Q", "--command", "echo plain words")
	rep, err = c.Request(ctx, "text", "Q", nil)
	if err != nil || string(rep.Payload) != `"plain words"` {
		t.Errorf("text output: %s, %v", rep.Payload, err)
	}
	stop()
}

func TestReplyUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"reply", "calc"}, "expected ID EVENT"},
		{[]string{"reply", "calc", "ADD", "{bad"}, "is not valid JSON"},
		{[]string{"reply", "calc", "ADD", "{}", "--command", "cat"}, "either JSON-REPLY or --command"},
	} {
		if r := runCmd(t, "", tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, %q", tc.args, r.code, r.stderr)
		}
	}
}
