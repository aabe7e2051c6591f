package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/httpapi"
	"github.com/statebus/statebus/internal/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, bustest.IgnoreWinio) }

// start runs a real server on a temporary socket and the monitoring
// endpoint, with the dashboard, on a free loopback port.
func start(t *testing.T, opt Options) (*server.Server, *Dashboard, string) {
	t.Helper()
	srv := bustest.Start(t, nil)
	m := httpapi.NewMetrics()
	if err := m.Watch(srv); err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(srv, m, nil)
	api.PublishMachines = opt.Machines
	if opt.Interval == 0 {
		opt.Interval = 200 * time.Millisecond
	}
	d := New(srv, opt)
	api.Mount("/dashboard/", "the dashboard", d, d.Close)
	addr, err := api.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Shutdown(context.Background()) })
	return srv, d, "http://" + addr.String()
}

// traffic connects two machines and sends events from a to b until the
// test ends: names alternate PING and PONG.
func traffic(t *testing.T, srv *server.Server, a, b string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ca, err := statebus.Dial(ctx, a, statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := statebus.Dial(ctx, b, statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 20000; i++ { // bounded: 100 s at most
			name := "PING"
			if i%2 == 1 {
				name = "PONG"
			}
			if ca.SendEvent(ctx, b, name, i) != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		ca.Close()
		cb.Close()
	})
}

type sse struct {
	kind string
	data []byte
}

// stream opens the event stream with query q and returns its events.
func stream(t *testing.T, base, q string) <-chan sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/dashboard/events?"+q, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET events: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	out := make(chan sse, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.kind = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(line[len("data: "):])
			case line == "":
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
				ev = sse{}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return out
}

// until reads events of kind until ok accepts one, for at most 10 s.
func until[T any](t *testing.T, events <-chan sse, kind string, ok func(T) bool) T {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, open := <-events:
			if !open {
				t.Fatalf("stream ended while waiting for a %s", kind)
			}
			if ev.kind != kind {
				continue
			}
			var v T
			if err := json.Unmarshal(ev.data, &v); err != nil {
				t.Fatalf("%s: %v: %s", kind, err, ev.data)
			}
			if ok(v) {
				return v
			}
		case <-deadline:
			t.Fatalf("no matching %s within 10 s", kind)
		}
	}
}

func find(v view, id string) (machine, bool) {
	for _, m := range v.Machines {
		if m.ID == id {
			return m, true
		}
	}
	return machine{}, false
}

func TestStreamShowsMachinesTrafficAndTail(t *testing.T) {
	srv, _, base := start(t, Options{Machines: true})
	traffic(t, srv, "dash-a", "dash-b")
	events := stream(t, base, "")

	v := until(t, events, "snapshot", func(v view) bool {
		a, okA := find(v, "dash-a")
		b, okB := find(v, "dash-b")
		return okA && okB && a.In > 0 && b.Out > 0 && len(v.Traffic) > 0
	})
	a, _ := find(v, "dash-a")
	if a.PID <= 0 || a.Since == 0 || a.Conn == 0 {
		t.Errorf("dash-a lacks its pid, connection or connection time: %+v", a)
	}
	if p := v.Traffic[0]; p.From != "dash-a" || p.To != "dash-b" || p.Rate <= 0 {
		t.Errorf("traffic: %+v, want dash-a -> dash-b", v.Traffic)
	}
	tail := until(t, events, "tail", func(m tailMessage) bool { return len(m.Events) > 0 })
	if e := tail.Events[0]; e.Source != "dash-a" || e.Target != "dash-b" || (e.Name != "PING" && e.Name != "PONG") || e.Size == 0 {
		t.Errorf("tail event: %+v", e)
	}

	// A filter: only PONG reaches this page's tail.
	pongs := stream(t, base, url.Values{"name": {"PO*"}}.Encode())
	for range 3 {
		m := until(t, pongs, "tail", func(m tailMessage) bool { return len(m.Events) > 0 })
		for _, e := range m.Events {
			if e.Name != "PONG" {
				t.Fatalf("filter name=PO* let through %+v", e)
			}
		}
	}
}

// TestTailBudget: a page receives at most TailBudget events per
// TailInterval however fast the bus is, and is told how many matched.
func TestTailBudget(t *testing.T) {
	srv, _, base := start(t, Options{Machines: true})
	events := stream(t, base, "")
	ctx := context.Background()
	a, err := statebus.Dial(ctx, "fast-a", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := statebus.Dial(ctx, "fast-b", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	until(t, events, "snapshot", func(v view) bool { _, ok := find(v, "fast-b"); return ok })
	for i := range 2000 {
		if err := a.SendEvent(ctx, "fast-b", "E", i); err != nil {
			t.Fatal(err)
		}
	}
	var shown, matched uint64
	for matched < 2000 {
		m := until(t, events, "tail", func(tailMessage) bool { return true })
		if len(m.Events) > TailBudget {
			t.Fatalf("%d events in one tail message, budget %d", len(m.Events), TailBudget)
		}
		shown += uint64(len(m.Events))
		matched += m.Matched
	}
	if matched != 2000 || shown >= matched {
		t.Errorf("matched %d (want 2000), shown %d", matched, shown)
	}
}

// TestHiddenWithoutMachines: without HttpMachines the page learns no id,
// no event and no traffic, as /machines answers 403.
func TestHiddenWithoutMachines(t *testing.T) {
	srv, _, base := start(t, Options{Machines: false})
	traffic(t, srv, "secret-a", "secret-b")
	events := stream(t, base, "")
	deadline := time.After(2 * time.Second)
	snapshots := 0
	for {
		select {
		case ev := <-events:
			if strings.Contains(string(ev.data), "secret") {
				t.Fatalf("a %s reveals a machine: %s", ev.kind, ev.data)
			}
			if ev.kind == "tail" {
				t.Fatalf("a tail was sent: %s", ev.data)
			}
			if ev.kind == "snapshot" {
				var v view
				json.Unmarshal(ev.data, &v)
				if v.Visible || v.Totals.Connections != 2 {
					t.Fatalf("snapshot: %s", ev.data)
				}
				snapshots++
			}
			continue
		case <-deadline:
		}
		break
	}
	if snapshots < 2 {
		t.Fatalf("%d snapshots in 2 s at 200 ms", snapshots)
	}
}

func status(t *testing.T, req *http.Request) (int, http.Header) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestToken(t *testing.T) {
	_, _, base := start(t, Options{Machines: true, Token: "s3cret"})
	get := func(path string, edit func(*http.Request)) (int, http.Header) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if edit != nil {
			edit(req)
		}
		return status(t, req)
	}
	for _, p := range []string{"/dashboard/", "/dashboard/app.js", "/dashboard/events", "/dashboard/?token=wrong"} {
		if code, _ := get(p, nil); code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", p, code)
		}
	}
	code, h := get("/dashboard/?token=s3cret", nil)
	if code != 200 {
		t.Fatalf("GET with ?token: %d", code)
	}
	cookie := h.Get("Set-Cookie")
	if !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") {
		t.Errorf("cookie %q", cookie)
	}
	name, value, _ := strings.Cut(strings.Split(cookie, ";")[0], "=")
	if code, _ := get("/dashboard/app.js", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: name, Value: value}) }); code != 200 {
		t.Errorf("GET app.js with the cookie: %d", code)
	}
	if code, _ := get("/dashboard/style.css", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }); code != 200 {
		t.Errorf("GET style.css with a bearer token: %d", code)
	}
	// With a token, any Host may ask (the token is the protection).
	if code, _ := get("/dashboard/?token=s3cret", func(r *http.Request) { r.Host = "bus.example.org:9555" }); code != 200 {
		t.Errorf("GET with the token and a host name: %d", code)
	}
}

// TestRebinding: without a token, a request naming a host other than an
// address or localhost (a page elsewhere whose name was rebound to
// 127.0.0.1) is refused.
func TestRebinding(t *testing.T) {
	_, _, base := start(t, Options{Machines: true})
	for host, want := range map[string]int{
		"attacker.example:9555": http.StatusMisdirectedRequest,
		"localhost:9555":        200,
		"127.0.0.1:9555":        200,
		"[::1]:9555":            200,
	} {
		req, _ := http.NewRequest("GET", base+"/dashboard/", nil)
		req.Host = host
		if code, _ := status(t, req); code != want {
			t.Errorf("Host %s: %d, want %d", host, code, want)
		}
	}
	req, _ := http.NewRequest("GET", base+"/dashboard/", nil)
	code, h := status(t, req)
	if code != 200 || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("GET /dashboard/: %d, CSP %q", code, h.Get("Content-Security-Policy"))
	}
}

// TestStreamLimit: at most MaxStreams pages; linger after the last
// closes, the aggregator stops and the tap is gone.
func TestStreamLimit(t *testing.T) {
	srv, d, base := start(t, Options{Machines: true})
	var cancels []context.CancelFunc
	var bodies []io.Closer
	for range MaxStreams {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/dashboard/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream: %v %v", err, resp)
		}
		cancels = append(cancels, cancel)
		bodies = append(bodies, resp.Body)
	}
	req, _ := http.NewRequest("GET", base+"/dashboard/events", nil)
	if code, _ := status(t, req); code != http.StatusServiceUnavailable {
		t.Errorf("stream %d: %d, want 503", MaxStreams+1, code)
	}
	long := strings.Repeat("x", MaxPatternBytes+1)
	req, _ = http.NewRequest("GET", base+"/dashboard/events?target="+long, nil)
	if code, _ := status(t, req); code != http.StatusBadRequest {
		t.Errorf("a %d-byte pattern: %d, want 400", len(long), code)
	}
	for i := range cancels {
		cancels[i]()
		bodies[i].Close()
	}
	bustest.Eventually(t, linger+5*time.Second, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.streams == 0 && d.agg == nil && !srv.Tapped()
	}, "the aggregator still runs, or the tap is installed, with no page open")
}
