package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, bustest.IgnoreWinio) }

// start runs a real server on a temporary socket and the API on a free
// loopback port.
func start(t *testing.T) (*server.Server, string) { return startWith(t, nil) }

// startWith is start with more configuration.
func startWith(t *testing.T, cfg func(*server.Config)) (*server.Server, string) {
	t.Helper()
	m := NewMetrics()
	srv := bustest.Start(t, func(c *server.Config) {
		c.OnRouteLatency = m.ObserveRouteLatency
		if cfg != nil {
			cfg(c)
		}
	})
	if err := m.Watch(srv); err != nil {
		t.Fatal(err)
	}
	api := New(srv, m, nil)
	api.PublishMachines = true
	addr, err := api.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Shutdown(context.Background()) })
	return srv, "http://" + addr.String()
}

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func getJSON(t *testing.T, url string, wantCode int, v any) {
	t.Helper()
	code, h, body := get(t, url)
	if code != wantCode || h.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s, want %d JSON: %s", url, code, h.Get("Content-Type"), wantCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

// scrape parses /metrics with Prometheus' own text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, h, body := get(t, base+"/metrics")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", code, h.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return mf
}

// value returns the sample of name whose labels include want.
func value(t *testing.T, mf map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := mf[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with %v", name, want)
	return 0
}

func TestEndpoints(t *testing.T) {
	srv, base := start(t)
	ctx := context.Background()
	before := scrape(t, base)

	a, err := statebus.Dial(ctx, "machine-a", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := statebus.Dial(ctx, "machine-b", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// 128 delivered events (two latency samples at one in 64) and three
	// refused ones.
	const sent, refused = 128, 3
	for i := range sent {
		if err := a.SendEvent(ctx, "machine-b", "PING", i); err != nil {
			t.Fatal(err)
		}
	}
	for range refused {
		if err := a.SendEvent(ctx, "nobody", "PING", nil); err == nil {
			t.Fatal("event to nobody accepted")
		}
	}

	var h Health
	getJSON(t, base+"/healthz", 200, &h)
	if h.Status != "ok" || !h.IsHealthy || h.ConnectionCount != 2 || h.RegisteredMachines != 2 {
		t.Fatalf("/healthz %+v", h)
	}

	mf := scrape(t, base)
	delta := func(name string, labels ...string) float64 {
		return value(t, mf, name, labels...) - value(t, before, name, labels...)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"statebus_events_received_total", nil, sent + refused},
		{"statebus_events_delivered_total", nil, sent},
		{"statebus_refusals_total", []string{"reason", "target_not_connected"}, refused},
		{"statebus_refusals_total", []string{"reason", "slow_consumer"}, 0},
		{"statebus_route_latency_seconds", nil, sent / 64},
		{"statebus_connections", nil, 2},
		{"statebus_machines_registered", nil, 2},
		{"statebus_refusals_total", []string{"reason", "limit"}, 0},
		{"statebus_slow_consumers_closed_total", nil, 0},
		{"statebus_connections_refused_per_uid_total", nil, 0},
		{"statebus_pending_requests", nil, 0},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if value(t, mf, "statebus_up") != 1 || value(t, mf, "statebus_connections_peak") != 2 ||
		value(t, mf, "statebus_connections_max") != 100 {
		t.Errorf("up %v, peak %v, max %v", value(t, mf, "statebus_up"),
			value(t, mf, "statebus_connections_peak"), value(t, mf, "statebus_connections_max"))
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "statebus_build_info",
		"statebus_outbound_queue_bytes", "statebus_received_bytes_total", "statebus_sent_bytes_total"} {
		if _, ok := mf[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// Every reason is exported, and nothing else is a label: no machine ids.
	if n := len(mf["statebus_refusals_total"].Metric); n != len(server.RefusalReasons()) {
		t.Errorf("%d refusal series, want %d", n, len(server.RefusalReasons()))
	}
	for name, f := range mf {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), "machine-") {
					t.Errorf("%s has a machine id label %s=%s", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	// /status agrees with the server's own counters (the bus is idle now).
	var st Status
	getJSON(t, base+"/status", 200, &st)
	stats := srv.Stats()
	if st.Status != "ok" || st.EventsReceived != stats.EventsReceived || st.EventsDelivered != stats.EventsDelivered ||
		st.Refused["target_not_connected"] != refused || st.BytesIn != stats.BytesIn || st.BytesIn == 0 ||
		st.BytesOut == 0 || st.PeakConnections != 2 || st.PeakConnectionsAt.IsZero() || st.UptimeSeconds <= 0 ||
		st.Socket != srv.Addr() || st.Version == "" || st.ConnectionCount != 2 {
		t.Fatalf("/status %+v, server %+v", st, stats)
	}
	if got := value(t, mf, "statebus_received_bytes_total"); got != float64(stats.BytesIn) {
		t.Errorf("received bytes %v, /status %d", got, stats.BytesIn)
	}

	var ms []protocol.MachineInfo
	getJSON(t, base+"/machines", 200, &ms)
	ids := map[string]bool{}
	for _, m := range ms {
		ids[m.MachineID] = m.Subscribed && m.PeerPID > 0
	}
	if len(ms) != 2 || !ids["machine-a"] || !ids["machine-b"] {
		t.Fatalf("/machines %+v", ms)
	}

	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/nope", 404}, {"POST", "/healthz", 405}, {"GET", "/", 200}, {"HEAD", "/healthz", 200},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
	}
}

// TestMachinesNotPublished: by default /machines tells every local user
// only where to ask instead.
func TestMachinesNotPublished(t *testing.T) {
	srv := bustest.Start(t, nil)
	m := NewMetrics()
	api := New(srv, m, nil)
	addr, err := api.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Shutdown(context.Background()) })
	code, _, body := get(t, "http://"+addr.String()+"/machines")
	if code != 403 || !strings.Contains(string(body), "MessageBus:HttpMachines") {
		t.Fatalf("/machines: %d %s", code, body)
	}
}

// TestUnhealthy: once Shutdown has begun /healthz answers 503 and the
// metrics say so, while the endpoint itself keeps serving.
func TestUnhealthy(t *testing.T) {
	srv, base := start(t)
	var empty []protocol.MachineInfo
	getJSON(t, base+"/machines", 200, &empty)
	if empty == nil || len(empty) != 0 {
		t.Fatalf("/machines of an empty bus: %v, want []", empty)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var h Health
	getJSON(t, base+"/healthz", 503, &h)
	if h.Status != "unavailable" || h.Reason != "shutting down" || h.IsHealthy {
		t.Fatalf("/healthz after shutdown: %+v", h)
	}
	var st Status
	getJSON(t, base+"/status", 200, &st)
	if st.Status != "unavailable" || st.IsHealthy {
		t.Fatalf("/status after shutdown: %+v", st)
	}
	if up := value(t, scrape(t, base), "statebus_up"); up != 0 {
		t.Fatalf("statebus_up %v after shutdown", up)
	}
}

func TestStartBusyAddress(t *testing.T) {
	_, base := start(t)
	addr := strings.TrimPrefix(base, "http://")
	m := NewMetrics()
	_, err := New(nil, m, nil).Start(addr)
	want := fmt.Sprintf("cannot serve the monitoring endpoint on %s: ", addr)
	inUse := error(syscall.EADDRINUSE)
	if runtime.GOOS == "windows" {
		inUse = syscall.Errno(10048) // WSAEADDRINUSE
	}
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, inUse) {
		t.Fatalf("second listener on %s: %v", addr, err)
	}
}
