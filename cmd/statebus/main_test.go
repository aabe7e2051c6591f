package main

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/fedtest"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(bustest.ImpostorEnv); path != "" {
		os.Exit(bustest.RunImpostor(path)) // a child of TestServerUID
	}
	// machines_fed_test.go runs nats-server nodes.
	goleak.VerifyTestMain(m, append([]goleak.Option{bustest.IgnoreWinio}, fedtest.LeakOptions...)...)
}

// syncBuffer is written by commands' event handlers while the test reads
// it.
type syncBuffer = bustest.Buffer

// result is what a command run in-process did.
type result struct {
	code           int
	stdout, stderr string
}

// newEnv returns an env reading stdin, writing to fresh buffers, with an
// empty environment.
func newEnv(stdin string) (*env, *syncBuffer, *syncBuffer) {
	var out, errOut syncBuffer
	return &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(string) string { return "" }}, &out, &errOut
}

// runCmd runs the statebus command line args in-process with stdin.
// noBus is an address where no bus listens: a socket in a directory that
// does not exist, or on Windows a pipe name nobody serves.
func noBus() string {
	if runtime.GOOS == "windows" {
		return `\\.\pipe\statebus-no-such-bus`
	}
	return "/tmp/statebus-no-such-dir/bus.sock"
}

func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, out, errOut := newEnv(stdin)
	code := run(ctx, e, args)
	return result{code, out.String(), errOut.String()}
}

// startBus starts a bus and returns its --pipe-name flag and a client
// option for it.
func startBus(t *testing.T) (flag []string, opt statebus.Option) {
	srv := bustest.Start(t, nil)
	return []string{"--pipe-name", srv.Addr()}, statebus.WithPipeName(srv.Addr())
}

// dial connects a test client and closes it when the test ends.
func dial(t *testing.T, id string, opt statebus.Option) *statebus.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := statebus.Dial(ctx, id, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, l) {
			t.Errorf("output lacks %q:\n%s", l, text)
		}
	}
}

func args(flag []string, a ...string) []string { return append(a, flag...) }

func TestUsage(t *testing.T) {
	r := runCmd(t, "", "--help")
	if r.code != 0 {
		t.Errorf("--help exit %d", r.code)
	}
	wantLines(t, r.stdout, "send", "listen", "machines", "health", "test", "menu", "selftest", "reply")
	if r := runCmd(t, "", "nonsense"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "nonsense"`) {
		t.Errorf("unknown command: %+v", r)
	}
}

// Every subcommand has --help with an example, exit 0, and refuses an
// unknown flag with exit 2.
func TestSubcommandHelp(t *testing.T) {
	for _, name := range []string{"send", "listen", "machines", "health", "test", "menu", "selftest", "reply"} {
		t.Run(name, func(t *testing.T) {
			r := runCmd(t, "", name, "--help")
			if r.code != 0 {
				t.Errorf("--help: exit %d, stderr %s", r.code, r.stderr)
			}
			wantLines(t, r.stdout, "Usage: statebus "+name, "Example:\n  statebus ", "-pipe-name", "-json")
			r = runCmd(t, "", name, "--no-such-flag")
			if r.code != 2 || !strings.Contains(r.stderr, "flag provided but not defined: -no-such-flag") ||
				!strings.Contains(r.stderr, "statebus "+name+" --help") {
				t.Errorf("unknown flag: %+v", r)
			}
		})
	}
}

func TestPipeNameFromEnvironment(t *testing.T) {
	srv := bustest.Start(t, nil)
	e, out, _ := newEnv("")
	e.getenv = func(k string) string {
		if k == "STATEBUS_PIPE_NAME" {
			return srv.Addr()
		}
		return ""
	}
	if code := run(context.Background(), e, []string{"health"}); code != 0 {
		t.Fatalf("health with STATEBUS_PIPE_NAME: exit %d", code)
	}
	wantLines(t, out.String(), "✓ statebusd on "+srv.Addr()+" is healthy")
}

func TestColourOnlyOnTerminal(t *testing.T) {
	flag, _ := startBus(t)
	e, out, _ := newEnv("")
	e.tty = true
	if code := run(context.Background(), e, args(flag, "health")); code != 0 {
		t.Fatal(code)
	}
	if !strings.Contains(out.String(), "\x1b[32m✓\x1b[0m") {
		t.Errorf("no colour on a terminal:\n%q", out.String())
	}
	if r := runCmd(t, "", args(flag, "health")...); strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("colour on a pipe:\n%q", r.stdout)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1832: "1,832", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{54 * time.Millisecond: "54ms", 540 * time.Microsecond: "0.54ms"} {
		if got := ms(d); got != want {
			t.Errorf("ms(%v) = %q, want %q", d, got, want)
		}
	}
	for line, want := range map[string]string{"send a B hello  world ": "hello  world", "send a B": "", "send\ta\tB\tx": "x"} {
		if got := afterFields(line, 3); got != want {
			t.Errorf("afterFields(%q) = %q, want %q", line, got, want)
		}
	}
}
