package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/wine"
)

var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// metrics scrapes url and returns each sample as "name{l=v,...}" -> value,
// parsed by Prometheus' text parser. Histograms give their _count.
func metrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d", url, code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := name
			if len(m.Label) > 0 {
				var ls []string
				for _, l := range m.Label {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = sample(m)
		}
	}
	return out
}

func sample(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// TestMonitoringEndpoint runs statebusd as a process with --http
// 127.0.0.1:0, learns the port from its log, drives traffic with the Go
// client and checks that the metrics moved by exactly that traffic.
func TestMonitoringEndpoint(t *testing.T) {
	path := busPath(t)
	d := startDaemon(t, []string{"--pipe-name", path, "--http", "127.0.0.1:0", "--http-machines", "true", "--log-format", "json"}, nil)
	rec := d.waitLog(t, "monitoring endpoint listening")
	addr, _ := rec["addr"].(string)
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") || rec["category"] != "statebus.daemon" {
		t.Fatalf("log record %v", rec)
	}
	base := "http://" + addr
	before := metrics(t, base+"/metrics")

	ctx := context.Background()
	a, err := statebus.Dial(ctx, "sender", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := statebus.Dial(ctx, "receiver", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const delivered, refused = 256, 5
	for i := range delivered {
		if err := a.SendEvent(ctx, "receiver", "TICK", i); err != nil {
			t.Fatal(err)
		}
	}
	for range refused {
		if err := a.SendEvent(ctx, "absent", "TICK", nil); err == nil {
			t.Fatal("event to an absent machine accepted")
		}
	}

	after := metrics(t, base+"/metrics")
	for name, want := range map[string]float64{
		"statebus_events_received_total":                       delivered + refused,
		"statebus_events_delivered_total":                      delivered,
		"statebus_refusals_total{reason=target_not_connected}": refused,
		"statebus_refusals_total{reason=not_owner}":            0,
		"statebus_route_latency_seconds":                       delivered / 64, // one in 64 sampled
		"statebus_connections":                                 2,
		"statebus_machines_registered":                         2,
	} {
		if got := after[name] - before[name]; got != want {
			t.Errorf("%s moved by %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "statebus_outbound_queue_bytes"} {
		if _, ok := after[name]; !ok {
			t.Errorf("no %s in /metrics", name)
		}
	}
	if after["statebus_received_bytes_total"] <= before["statebus_received_bytes_total"] ||
		after["statebus_sent_bytes_total"] <= before["statebus_sent_bytes_total"] || after["statebus_up"] != 1 {
		t.Errorf("bytes or up did not move: %v", after)
	}

	code, body := httpGet(t, base+"/healthz")
	var h map[string]any
	json.Unmarshal(body, &h)
	if code != 200 || h["status"] != "ok" || h["ConnectionCount"] != 2.0 {
		t.Fatalf("/healthz %d %s", code, body)
	}
	code, body = httpGet(t, base+"/status")
	var st struct {
		EventsDelivered uint64
		Refused         map[string]uint64
		PeakConnections int
		UptimeSeconds   float64
		Socket          string
	}
	if err := json.Unmarshal(body, &st); err != nil || code != 200 || st.EventsDelivered != delivered ||
		st.Refused["target_not_connected"] != refused || st.PeakConnections < 2 || st.Socket != path {
		t.Fatalf("/status %d %s", code, body)
	}
	code, body = httpGet(t, base+"/machines")
	var ms []statebus.MachineInfo
	if err := json.Unmarshal(body, &ms); err != nil || code != 200 || len(ms) != 2 {
		t.Fatalf("/machines %d %s", code, body)
	}
	if !wine.Running() { // which cannot stop it gracefully (stopGracefully); the cleanup kills it
		d.stop(t)
	}
}

// TestMonitoringAddressBusy: a taken port is an error at start that says
// what to do, and exit status 1.
func TestMonitoringAddressBusy(t *testing.T) {
	path := busPath(t)
	d := startDaemon(t, []string{"--pipe-name", path, "--http", "127.0.0.1:0", "--http-machines", "true", "--log-format", "json"}, nil)
	addr := d.waitLog(t, "monitoring endpoint listening")["addr"].(string)
	var stderr strings.Builder
	code := run([]string{"--pipe-name", path + "2", "--http", addr}, env(nil), io.Discard, &stderr, nil, nil)
	if code != 1 || !strings.Contains(stderr.String(), "cannot serve the monitoring endpoint on "+addr) ||
		!strings.Contains(stderr.String(), "--http '' to turn it off") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
