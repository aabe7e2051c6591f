package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// fakeSource answers with fixed documents, so that every field can carry a
// value no other field has.
type fakeSource struct {
	h  protocol.HealthStatus
	st server.Stats
}

func (f *fakeSource) Status() protocol.HealthStatus { return f.h }
func (f *fakeSource) Stats() server.Stats           { return f.st }

// healthMetrics says which series carries each health field, or why none
// does. A field added to protocol.HealthStatus fails the test until it is
// placed here.
var healthMetrics = map[string]string{
	"IsHealthy":          "statebus_up",
	"ConnectionCount":    "statebus_connections",
	"RegisteredMachines": "statebus_machines_registered",
	"LastActivityAt":     "statebus_last_activity_timestamp_seconds",
	"StartedAt":          "statebus_start_time_seconds",
	"PeakConnections":    "statebus_connections_peak",
	"MaxConnections":     "statebus_connections_max",
	// Not series of their own:
	"UptimeSeconds":     "", // time() - statebus_start_time_seconds
	"Version":           "", // statebus_build_info's version label
	"PeakConnectionsAt": "", // a time for people reading /status
	"ServiceUID":        "", // identities, for clients checking their peer
	"ServicePID":        "",
}

// serve answers one GET through the API's handler.
func serve(t *testing.T, a *API, path string) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != 200 {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return mf
}

// sample is one statebus_ series of a scrape.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func samples(mf map[string]*dto.MetricFamily) []sample {
	var out []sample
	for name, f := range mf {
		if !strings.HasPrefix(name, "statebus_") {
			continue
		}
		for _, m := range f.Metric {
			s := sample{name: name, labels: map[string]string{}}
			for _, l := range m.Label {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.Counter.GetValue()
			case m.Gauge != nil:
				s.value = m.Gauge.GetValue()
			default:
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// TestEveryCounterExported gives each field of server.Stats, and each
// refusal reason, a value no other has, and finds each in /status under
// its own name and in exactly one /metrics series.
func TestEveryCounterExported(t *testing.T) {
	srv := bustest.Start(t, nil)
	fake := &fakeSource{st: server.Stats{Refused: map[string]uint64{}}}
	want := map[string]float64{} // Stats field (or Refused[reason]) -> value
	v := reflect.ValueOf(&fake.st).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		n := uint64(1_000_000 + 1000*i)
		switch f.Kind() {
		case reflect.Uint64:
			f.SetUint(n)
		case reflect.Int:
			f.SetInt(int64(n))
		case reflect.Map: // Refused, filled below
			if name != "Refused" {
				t.Fatalf("Stats.%s: a map this test does not know", name)
			}
			continue
		default:
			t.Fatalf("Stats.%s: kind %s this test does not know", name, f.Kind())
		}
		want[name] = float64(n)
	}
	for j, r := range server.RefusalReasons() {
		fake.st.Refused[r] = uint64(5_000_000 + 1000*j)
		want["Refused["+r+"]"] = float64(fake.st.Refused[r])
	}
	started := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	fake.h = protocol.HealthStatus{IsHealthy: true, ConnectionCount: 7, RegisteredMachines: 8,
		LastActivityAt: started.Add(time.Hour), StartedAt: started, UptimeSeconds: 3600,
		PeakConnections: 9, PeakConnectionsAt: started.Add(time.Minute), MaxConnections: 10,
		Version: "test", ServiceUID: 11, ServicePID: 12}

	m := NewMetrics()
	if err := m.Registry().Register(newCollector(fake)); err != nil {
		t.Fatal(err)
	}
	a := New(srv, m, nil)
	a.src = fake

	// /status: every Stats field under its own name, with its value.
	var doc map[string]any
	d := json.NewDecoder(bytes.NewReader(serve(t, a, "/status")))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if name == "Refused" {
			continue
		}
		if got, ok := doc[name].(json.Number); !ok || got.String() != jsonNum(want[name]) {
			t.Errorf("/status %s = %v, want %v", name, doc[name], uint64(want[name]))
		}
	}
	refused, _ := doc["Refused"].(map[string]any)
	for _, r := range server.RefusalReasons() {
		if got, ok := refused[r].(json.Number); !ok || got.String() != jsonNum(want["Refused["+r+"]"]) {
			t.Errorf("/status Refused[%s] = %v, want %v", r, refused[r], uint64(want["Refused["+r+"]"]))
		}
	}
	for _, k := range []string{"IsHealthy", "PeakConnectionsAt", "ServiceUid", "Version"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("/status has no health field %s", k)
		}
	}

	// /metrics: each value in exactly one series; a refusal under its reason.
	ss := samples(parseMetrics(t, serve(t, a, "/metrics")))
	for _, field := range slices.Sorted(maps.Keys(want)) {
		var found []sample
		for _, s := range ss {
			if s.value == want[field] {
				found = append(found, s)
			}
		}
		switch {
		case len(found) == 0:
			t.Errorf("Stats.%s is in no /metrics series", field)
		case len(found) > 1:
			t.Errorf("Stats.%s is in %d /metrics series: %v", field, len(found), found)
		case strings.HasPrefix(field, "Refused["):
			r := strings.TrimSuffix(strings.TrimPrefix(field, "Refused["), "]")
			if found[0].name != "statebus_refusals_total" || found[0].labels["reason"] != r {
				t.Errorf("Stats.%s is in %s%v, want statebus_refusals_total{reason=%q}", field, found[0].name, found[0].labels, r)
			}
		}
	}

	// Health fields: each in its series, or there on purpose not to be.
	hv := reflect.ValueOf(fake.h)
	byName := map[string]float64{}
	for _, s := range ss {
		byName[s.name] = s.value
	}
	for i := range hv.NumField() {
		name := hv.Type().Field(i).Name
		metric, known := healthMetrics[name]
		if !known {
			t.Errorf("HealthStatus.%s: say in healthMetrics which series carries it, or why none does", name)
			continue
		}
		if metric == "" {
			continue
		}
		var w float64
		switch f := hv.Field(i).Interface().(type) {
		case bool:
			if f {
				w = 1
			}
		case int:
			w = float64(f)
		case time.Time:
			w = float64(f.Unix())
		}
		if got, ok := byName[metric]; !ok || got != w {
			t.Errorf("HealthStatus.%s: %s = %v (present %v), want %v", name, metric, got, ok, w)
		}
	}
}

// jsonNum is how encoding/json writes an integral count.
func jsonNum(f float64) string {
	b, _ := json.Marshal(uint64(f))
	return string(b)
}

// section returns the lines of docs/operations.md from the heading that
// starts with title to the next heading of that level or above.
func section(t *testing.T, title string) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	level := strings.Index(title, " ")
	var out []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if in && strings.HasPrefix(line, "#") {
			if l := strings.Index(line, " "); l > 0 && l <= level && strings.Trim(line[:l], "#") == "" {
				break
			}
		}
		if strings.HasPrefix(line, title) {
			in = true
		}
		if in {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatalf("docs/operations.md has no %q", title)
	}
	return out
}

// cells splits a markdown table row.
func cells(line string) []string {
	if !strings.HasPrefix(line, "|") {
		return nil
	}
	return strings.Split(strings.Trim(line, "|"), "|")
}

var backticked = regexp.MustCompile("`([^`]*)`")

// quoted returns the `code` spans of s that match only (all of them if
// only is nil).
func quoted(s string, only *regexp.Regexp) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(s, -1) {
		if only == nil || only.MatchString(m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

var (
	reasonWord = regexp.MustCompile(`^[a-z_]+$`)   // target_not_connected, not "drop"
	jsonKey    = regexp.MustCompile(`^[A-Za-z]+$`) // EventsReceived, not /healthz
)

// TestMetricsDocumented: the metrics table in operations.md names every
// statebus_ series /metrics exports, with its labels, and no other; the
// refusal reasons it lists are the ones exported.
func TestMetricsDocumented(t *testing.T) {
	_, base := start(t)
	mf := scrape(t, base)

	exported := map[string]string{} // name -> sorted label names
	for name, f := range mf {
		if !strings.HasPrefix(name, "statebus_") {
			continue
		}
		var labels []string
		for _, l := range f.Metric[0].Label {
			labels = append(labels, l.GetName())
		}
		slices.Sort(labels)
		exported[name] = strings.Join(labels, ",")
	}
	var exportedReasons []string
	for _, m := range mf["statebus_refusals_total"].Metric {
		exportedReasons = append(exportedReasons, m.Label[0].GetValue())
	}

	documented := map[string]string{}
	var docReasons []string
	for _, line := range section(t, "### Metrics") {
		c := cells(line)
		if len(c) < 3 {
			continue
		}
		for _, q := range quoted(c[0], nil) {
			if !strings.HasPrefix(q, "statebus_") {
				continue
			}
			name, labels, _ := strings.Cut(strings.TrimSuffix(q, "}"), "{")
			ls := strings.Split(labels, ",")
			if labels == "" {
				ls = nil
			}
			slices.Sort(ls)
			if _, dup := documented[name]; dup {
				t.Errorf("%s is documented twice", name)
			}
			documented[name] = strings.Join(ls, ",")
			if name == "statebus_refusals_total" {
				docReasons = quoted(c[2], reasonWord)
			}
		}
	}
	for name, labels := range exported {
		if l, ok := documented[name]; !ok {
			t.Errorf("%s is exported but not in the metrics table of docs/operations.md", name)
		} else if l != labels {
			t.Errorf("%s: documented labels {%s}, exported {%s}", name, l, labels)
		}
	}
	for name := range documented {
		if _, ok := exported[name]; !ok {
			t.Errorf("%s is in the metrics table of docs/operations.md but not exported", name)
		}
	}
	slices.Sort(docReasons)
	slices.Sort(exportedReasons)
	reasons := slices.Sorted(slices.Values(server.RefusalReasons()))
	if !slices.Equal(docReasons, exportedReasons) || !slices.Equal(exportedReasons, reasons) {
		t.Errorf("refusal reasons: documented %v, exported %v, server.RefusalReasons %v", docReasons, exportedReasons, reasons)
	}
}

// TestEndpointsDocumented: the /status and /machines rows of
// operations.md's endpoint table name every key those documents have, and
// no other. /machines lists a client of the socket and one over TLS,
// whose entry has keys of its own.
func TestEndpointsDocumented(t *testing.T) {
	pki := bustest.NewPKI(t)
	srv, base := startWith(t, func(c *server.Config) {
		c.TLS.Listen = "127.0.0.1:0"
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = pki.ServerCert, pki.ServerKey, pki.CAFile
	})
	c, err := statebus.Dial(context.Background(), "machine-a", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cert, key := pki.Client(t, "gw", bustest.CertOptions{})
	r, err := statebus.Dial(context.Background(), "machine-b", statebus.WithURL("tls://"+srv.TLSAddr().String()),
		statebus.WithTLSFiles(pki.CAFile, cert, key))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var status map[string]json.RawMessage
	getJSON(t, base+"/status", 200, &status)
	var machines []map[string]json.RawMessage
	getJSON(t, base+"/machines", 200, &machines)
	if len(machines) != 2 {
		t.Fatalf("/machines: %v", machines)
	}
	maps.Copy(machines[0], machines[1])
	if runtime.GOOS != "windows" {
		machines[0]["PeerSid"] = nil // only pipe clients on Windows have one
	}
	for path, doc := range map[string]map[string]json.RawMessage{"/status": status, "/machines": machines[0]} {
		var documented []string
		for _, line := range section(t, "## 6. Monitoring") {
			if c := cells(line); len(c) >= 2 && strings.Contains(c[0], "GET "+path+"`") {
				documented = quoted(c[1], jsonKey)
			}
		}
		slices.Sort(documented)
		keys := slices.Sorted(maps.Keys(doc))
		if !slices.Equal(documented, keys) {
			t.Errorf("the %s row of docs/operations.md names %v;\n%s answers %v", path, documented, path, keys)
		}
	}
}

// TestCopyCounters: copies to watchers and routing rule copies that
// fail, counted by a real server, reach /status and /metrics.
func TestCopyCounters(t *testing.T) {
	srv, base := startWith(t, func(c *server.Config) {
		c.Routes = []router.RouteRule{{Match: router.RuleMatch{EventName: "AUDITED"}, Action: "copy", To: "audit"}}
	})
	ctx := context.Background()
	a, err := statebus.Dial(ctx, "machine-a", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	w, err := statebus.Dial(ctx, "watcher", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	seen := make(chan statebus.Event, 10)
	stop, err := w.Watch(ctx, statebus.Filter{EventName: "AUDITED"}, func(ev statebus.Event) { seen <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// To itself: delivered, watched, and copied to "audit", which is not
	// connected.
	const n = 3
	for range n {
		if err := a.SendEvent(ctx, "machine-a", "AUDITED", nil); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher got no copy")
		}
	}
	var st Status
	getJSON(t, base+"/status", 200, &st)
	if st.WatchCopies != n || st.RuleCopiesFailed != n || st.WatchDropped != 0 {
		t.Errorf("/status WatchCopies %d, RuleCopiesFailed %d, WatchDropped %d; want %d, %d, 0",
			st.WatchCopies, st.RuleCopiesFailed, st.WatchDropped, n, n)
	}
	mf := scrape(t, base)
	for name, want := range map[string]float64{"statebus_watch_copies_total": n,
		"statebus_rule_copies_failed_total": n, "statebus_watch_copies_dropped_total": 0} {
		if got := value(t, mf, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
