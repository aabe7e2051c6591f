package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// startListen runs listen in the background and waits until its id is
// registered. The returned function stops it and returns its result.
func startListen(t *testing.T, opt statebus.Option, a ...string) (out, errOut *syncBuffer, stop func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e, out, errOut := newEnv("")
	code := make(chan int, 1)
	go func() { code <- run(ctx, e, append([]string{"listen"}, a...)) }()
	id := a[0]
	bustest.Eventually(t, 10*time.Second, func() bool {
		ms, err := statebus.Machines(context.Background(), opt)
		return err == nil && slices.ContainsFunc(ms, func(m statebus.MachineInfo) bool { return m.MachineID == id && m.Subscribed }) &&
			strings.Contains(errOut.String(), "Listening as")
	}, "listen never registered %s; stderr: %s", id, errOut)
	stopped := false
	var res result
	stop = func() result {
		if !stopped {
			stopped = true
			cancel()
			res = result{<-code, out.String(), errOut.String()}
		}
		return res
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

func TestListen(t *testing.T) {
	flag, opt := startBus(t)
	out, errOut, stop := startListen(t, opt, append([]string{"machine-b"}, flag...)...)
	wantLines(t, errOut.String(), "Listening as machine-b on ")

	a := dial(t, "machine-a", opt)
	ctx := context.Background()
	if err := a.SendEvent(ctx, "machine-b", "PING", map[string]any{"Message": "Hello"}); err != nil {
		t.Fatal(err)
	}
	if err := a.SendEvent(ctx, "machine-b", "STOP", nil); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Count(out.String(), "\n") == 2 },
		"two JSON lines never appeared: %q", out)
	r := stop()
	if r.code != 0 {
		t.Errorf("exit %d after cancel: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var ev map[string]json.RawMessage
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatalf("line %q: %v", lines[0], err)
	}
	for k, want := range map[string]string{"SourceMachineId": `"machine-a"`, "TargetMachineId": `"machine-b"`,
		"EventName": `"PING"`, "Payload": `{"Message":"Hello"}`} {
		if string(ev[k]) != want {
			t.Errorf("%s = %s, want %s (line %s)", k, ev[k], want, lines[0])
		}
	}
	var ts time.Time
	if err := json.Unmarshal(ev["Timestamp"], &ts); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("Timestamp %s", ev["Timestamp"])
	}
	if !strings.Contains(lines[1], `"EventName":"STOP","Payload":null`) {
		t.Errorf("second line %s", lines[1])
	}
}

func TestListenEventFilter(t *testing.T) {
	flag, opt := startBus(t)
	out, _, stop := startListen(t, opt, append([]string{"machine-b", "--event", "WANTED"}, flag...)...)
	a := dial(t, "machine-a", opt)
	for _, name := range []string{"OTHER", "WANTED", "OTHER"} {
		if err := a.SendEvent(context.Background(), "machine-b", name, nil); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "WANTED") },
		"WANTED never printed: %q", out)
	if r := stop(); r.code != 0 || strings.Contains(r.stdout, "OTHER") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("exit %d, output %q", r.code, r.stdout)
	}
}

// With --reconnect=false, when the service goes away listen says so and
// exits 1.
func TestListenServiceGone(t *testing.T) {
	srv := bustest.Start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, _, errOut := newEnv("")
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, e, []string{"listen", "machine-b", "--reconnect=false", "--pipe-name", srv.Addr()})
	}()
	// Listening is printed once Dial has returned.
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(errOut.String(), "Listening as") },
		"listen never started: %s", errOut)
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 1 {
			t.Errorf("exit %d, want 1", c)
		}
		wantLines(t, errOut.String(), "✗ ", "is statebusd still running?")
	case <-sctx.Done():
		t.Fatal("listen did not notice the service stopping")
	}
}

func TestListenIDInUse(t *testing.T) {
	flag, opt := startBus(t)
	dial(t, "machine-b", opt)
	r := runCmd(t, "", args(flag, "listen", "machine-b")...)
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	wantLines(t, r.stderr, "✗ Machine id already in use: machine-b\n")
}

// By default listen outlives a restart of the service: it says it lost
// the connection, registers again when the service is back, and goes on
// printing events.
func TestListenReconnects(t *testing.T) {
	path := bustest.SocketPath(t)
	start := func() *server.Server {
		cfg := server.DefaultConfig()
		cfg.SocketPath = path
		cfg.HealthCheckInterval = 0
		srv, err := server.New(cfg)
		if err == nil {
			err = srv.Start()
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Shutdown(context.Background()) })
		return srv
	}
	srv := start()
	opt := statebus.WithPipeName(path)
	out, errOut, stop := startListen(t, opt, "machine-b", "--pipe-name", path)
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(errOut.String(), "; reconnecting\n") },
		"listen never said it lost the connection: %s", errOut)
	start()
	bustest.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(errOut.String(), "✓ reconnected to "+path+" as machine-b")
	}, "listen never reconnected: %s", errOut)
	a := dial(t, "machine-a", opt)
	if err := a.SendEvent(context.Background(), "machine-b", "AFTER", nil); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(out.String(), `"EventName":"AFTER"`) },
		"no event after reconnecting: %q", out)
	if r := stop(); r.code != 0 {
		t.Errorf("exit %d", r.code)
	}
}

func TestListenWatch(t *testing.T) {
	flag, opt := startBus(t)
	out, _, stop := startListen(t, opt, append([]string{"monitor", "--watch", "EventName=ALARM_*,SourceMachineId=sensor-*"}, flag...)...)
	s := dial(t, "sensor-1", opt)
	dial(t, "controller", opt)
	ctx := context.Background()
	s.SendEvent(ctx, "controller", "PING", nil)
	s.SendEvent(ctx, "controller", "ALARM_FIRE", nil)
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "ALARM_FIRE") },
		"watched event never printed: %q", out)
	if r := stop(); r.code != 0 || strings.Contains(r.stdout, "PING") ||
		!strings.Contains(r.stdout, `"TargetMachineId":"controller"`) {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	e, _, errOut := newEnv("")
	if code := run(context.Background(), e, append([]string{"listen", "x", "--watch", "Color=red"}, flag...)); code != 2 ||
		!strings.Contains(errOut.String(), `unknown field "Color"`) {
		t.Fatalf("bad filter: exit %d, %q", code, errOut.String())
	}
}

func TestListenGroup(t *testing.T) {
	flag, opt := startBus(t)
	out, _, stop := startListen(t, opt, append([]string{"worker-1", "--group", "workers"}, flag...)...)
	a := dial(t, "boss", opt)
	bustest.Eventually(t, 10*time.Second, func() bool {
		return a.SendEvent(context.Background(), "@workers", "JOB", 1) == nil
	}, "the group never had a member")
	e, _, errOut := newEnv("")
	if code := run(context.Background(), e, append([]string{"send", "--priority", "High", "@workers", "JOB", "2"}, flag...)); code != 0 {
		t.Fatalf("send --priority: exit %d %s", code, errOut.String())
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return strings.Count(out.String(), `"EventName":"JOB"`) == 2 },
		"group events never printed: %q", out)
	if r := stop(); r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
}
