package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// benchRunCmd runs statebus with args in-process and returns its exit
// code and output.
func benchRunCmd(t *testing.T, tty bool, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		getenv: func(string) string { return "" }, tty: tty}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, e, args)
	return code, out.String(), errb.String()
}

// benchDecode decodes stdout as exactly one JSON object with exactly the
// documented fields (and the optional ones named in extra).
func benchDecode(t *testing.T, stdout string, extra ...string) benchResult {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("more than one JSON document on stdout:\n%s", stdout)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := append([]string{"latency_us", "lost", "mb_per_sec", "mode", "msgs", "msgs_per_sec", "pubs", "seconds", "sent", "size", "subs"}, extra...)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("fields %v, want %v", keys, want)
	}
	var lat map[string]float64
	json.Unmarshal(raw["latency_us"], &lat)
	if len(lat) != 5 || !benchHas(lat, "p50", "p90", "p99", "p999", "max") {
		t.Fatalf("latency_us is %s, want p50 p90 p99 p999 max", raw["latency_us"])
	}
	var res benchResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func benchHas(m map[string]float64, keys ...string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

func TestBenchModes(t *testing.T) {
	for _, tc := range []struct {
		mode       string
		pubs, subs int
		msgs       int64
		delivered  int64 // msgs_per_sec * seconds
	}{
		{"unicast", 1, 1, 2000, 2000},
		{"unicast", 2, 3, 3001, 3001},
		{"broadcast", 1, 5, 500, 2500},
		{"broadcast", 2, 3, 400, 1200}, // the publishers' copies are not counted
		{"reqrep", 1, 1, 300, 300},
		{"reqrep", 3, 2, 301, 301},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			srv := bustest.Start(t, nil)
			code, stdout, stderr := benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--json",
				"--mode", tc.mode, "--pubs", strconv.Itoa(tc.pubs), "--subs", strconv.Itoa(tc.subs),
				"--msgs", strconv.Itoa(int(tc.msgs)), "--size", "64", "--timeout", "45s")
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			res := benchDecode(t, stdout)
			if res.Mode != tc.mode || res.Pubs != tc.pubs || res.Subs != tc.subs || res.Msgs != tc.msgs || res.Size != 64 {
				t.Errorf("echoed %+v", res)
			}
			if res.Lost != 0 {
				t.Errorf("lost %d", res.Lost)
			}
			if res.Seconds <= 0 || res.MsgsPerSec <= 0 || res.MBPerSec <= 0 {
				t.Errorf("seconds %v, msgs/s %v, MB/s %v", res.Seconds, res.MsgsPerSec, res.MBPerSec)
			}
			// The JSON rounds seconds to 3 decimals: on a short run that is
			// more than 1%, so allow for the rounding as well.
			tol := 0.01 + 0.0005/res.Seconds
			if got := res.MsgsPerSec * res.Seconds; got < float64(tc.delivered)*(1-tol) || got > float64(tc.delivered)*(1+tol) {
				t.Errorf("msgs_per_sec * seconds = %.0f, want %d delivered", got, tc.delivered)
			}
			l := res.Latency
			if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
				t.Errorf("latency percentiles out of order: %+v", l)
			}
			if strings.Contains(stderr, "\x1b") || stderr != "" {
				t.Errorf("stderr: %q", stderr)
			}
		})
	}
}

// TestBenchTransports: --inproc --transport tls and tcp measure over mutual
// TLS and plain TCP on 127.0.0.1; every event arrives.
func TestBenchTransports(t *testing.T) {
	for _, tr := range []string{"tls", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			if tr == "tcp" && runtime.GOOS != "linux" {
				t.Skip("Linux only: PlainTcp needs the kernel's socket table to tell a loopback peer's user")
			}
			for _, mode := range []string{"unicast", "reqrep"} {
				code, stdout, stderr := benchRunCmd(t, false, "bench", "--inproc", "--transport", tr, "--mode", mode, "--msgs", "2000", "--json")
				if code != 0 || !strings.Contains(stdout, `"lost": 0,`) {
					t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", mode, code, stdout, stderr)
				}
			}
		})
	}
}

func TestBenchTextInProc(t *testing.T) {
	code, stdout, stderr := benchRunCmd(t, false, "bench", "--inproc", "--pubs", "2", "--subs", "2", "--msgs", "1000")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"statebus bench: unicast, 2 publisher(s) -> 2 subscriber(s), 1,000 events of 128 bytes\n",
		"delivered 1,000 events in ",
		"; lost 0\n",
		"latency (µs, send to receive): p50 ",
		"per client:\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, " msgs/s "); n != 4 {
		t.Errorf("%d per-client lines, want 4:\n%s", n, stdout)
	}
	if strings.ContainsAny(stdout, "\r\x1b") {
		t.Errorf("a progress bar on a pipe:\n%q", stdout)
	}
}

func TestBenchProgressOnTerminal(t *testing.T) {
	code, stdout, stderr := benchRunCmd(t, true, "bench", "--inproc", "--msgs", "2000")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "\r") || !strings.Contains(stdout, "; lost 0\n") {
		t.Errorf("want a progress bar, then the report:\n%q", stdout)
	}
	// --json never draws one, terminal or not.
	code, stdout, _ = benchRunCmd(t, true, "bench", "--inproc", "--msgs", "2000", "--json")
	if code != 0 || strings.Contains(stdout, "\r") {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	benchDecode(t, stdout)
}

// An event the service refuses is lost: printed, and the exit code says so.
func TestBenchLost(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxMessageBytes, c.MaxQueueBytes = 1024, 1024
	})
	code, stdout, stderr := benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--json",
		"--msgs", "20", "--size", "2000", "--wait", "200ms")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if res := benchDecode(t, stdout); res.Lost != 20 {
		t.Errorf("lost %d, want 20", res.Lost)
	}
	// The service's refusal of the first event reaches the error handler
	// while the client refuses the rest itself, having learnt the limit:
	// either may be the first failure reported.
	if !strings.Contains(stderr, "Message exceeds 1024 bytes") && !strings.Contains(stderr, "the service takes at most 1024") {
		t.Errorf("stderr does not name the refusal:\n%s", stderr)
	}
}

func TestBenchHelp(t *testing.T) {
	code, stdout, _ := benchRunCmd(t, false, "bench", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"Usage: statebus bench [flags]",
		"HandleRequest handler replies",
		"Example:\n  statebus bench --inproc",
		"-mode string", "-pubs int", "-subs int", "-msgs int", "-size int",
		"-pipe-name string", "-json", "-inproc", "-timeout duration",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, stdout)
		}
	}
	if _, stdout, _ := benchRunCmd(t, false, "--help"); !strings.Contains(stdout, "bench ") {
		t.Errorf("statebus --help does not list bench:\n%s", stdout)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "fanout"}, `--mode must be unicast, broadcast, reqrep or connect, not "fanout"`},
		{[]string{"--pubs", "0"}, "--pubs must be 1 to 256, not 0"},
		{[]string{"--subs", "1000"}, "--subs must be 1 to 256, not 1000"},
		{[]string{"--msgs", "0"}, "--msgs must be 1 to 100000000, not 0"},
		{[]string{"--size", "8"}, "--size must be 16 to 524288 bytes, not 8"},
		{[]string{"--pairs", "0"}, "--pairs must be 1 to 256, not 0"},
		{[]string{"--pairs", "2", "--pubs", "2"}, "--pairs and --pubs exclude each other"},
		{[]string{"--pairs", "2", "--mode", "broadcast"}, "--pairs is for unicast and reqrep"},
		{[]string{"--rate", "-1"}, "--rate must be 0 (unpaced) to 100000000 events per second, not -1"},
		{[]string{"--mode", "connect", "--pubs", "2"}, "--mode connect takes no --pubs"},
		{[]string{"--mode", "connect", "--size", "64"}, "--mode connect takes no --size"},
		{[]string{"--framing", "xml"}, `--framing must be compact or json, not "xml"`},
		{[]string{"--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"--inproc", "--pipe-name", "x"}, "--inproc and --pipe-name exclude each other"},
		{[]string{"--inproc", "--url", "tls://h:1"}, "--inproc and --url exclude each other"},
		{[]string{"--transport", "tls"}, "--transport is for --inproc; to reach a running statebusd over TLS, give --url"},
		{[]string{"--inproc", "--transport", "quic"}, `--transport must be unix, tls or tcp, not "quic"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			code, stdout, stderr := benchRunCmd(t, false, append([]string{"bench"}, tc.args...)...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

func TestBenchUnreachable(t *testing.T) {
	code, stdout, stderr := benchRunCmd(t, false, "bench", "--pipe-name", bustest.SocketPath(t), "--json")
	if code != 1 || stdout != "" || stderr == "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// benchUnicastWant agrees with sending the events one by one.
func TestBenchUnicastWant(t *testing.T) {
	for _, msgs := range []int64{1, 7, 100, 1001} {
		for pubs := 1; pubs <= 4; pubs++ {
			for subs := 1; subs <= 5; subs++ {
				got := make([]int64, subs)
				for i := range pubs {
					for k := range benchShare(msgs, pubs, i) {
						got[(int64(i)+k)%int64(subs)]++
					}
				}
				for j := range subs {
					if w := benchUnicastWant(msgs, pubs, subs, j); w != got[j] {
						t.Fatalf("msgs %d pubs %d subs %d: subscriber %d wants %d, gets %d", msgs, pubs, subs, j, w, got[j])
					}
				}
			}
		}
	}
}

func TestBenchStamp(t *testing.T) {
	for _, size := range []int{benchMinSize, 17, 128} {
		p := benchPayload(size)
		if len(p) != size || !json.Valid(p) {
			t.Fatalf("payload %q", p)
		}
		if _, stamped, ok := benchStampOf(p); !ok || stamped {
			t.Fatalf("fresh payload %q: stamped %v, ok %v", p, stamped, ok)
		}
		now := time.Now()
		benchStamp(p, now)
		if len(p) != size || !json.Valid(p) {
			t.Fatalf("stamped payload %q", p)
		}
		if got, stamped, ok := benchStampOf(p); !ok || !stamped || got != now.UnixNano() {
			t.Fatalf("stamp %d %v %v, want %d", got, stamped, ok, now.UnixNano())
		}
		benchUnstamp(p)
		if _, stamped, ok := benchStampOf(p); !ok || stamped || !json.Valid(p) {
			t.Fatalf("unstamped payload %q: stamped %v, ok %v", p, stamped, ok)
		}
	}
	for _, p := range []string{`{"x":1}`, `"xxxxxxxxxxxxx"`, `"qxxxxxxxxxxxxxxxx"`, `"t0000000000*xxxxxx"`, `"xxxxxxxxxxxxxxxxx`} {
		if _, _, ok := benchStampOf([]byte(p)); ok {
			t.Errorf("a foreign payload %s is the bench's", p)
		}
	}
}

// benchTarget: in unicast, publisher i goes round the subscribers from
// subscriber i; with --pairs only to subscriber i; broadcast to "*".
func TestBenchTarget(t *testing.T) {
	ids := []string{"s0", "s1", "s2"}
	var got []string
	for k := range int64(4) {
		got = append(got, benchTarget(&benchConfig{mode: "unicast"}, ids, 1, k))
		got = append(got, benchTarget(&benchConfig{mode: "unicast", pairs: 3}, ids, 1, k))
		got = append(got, benchTarget(&benchConfig{mode: "broadcast"}, ids, 1, k))
	}
	want := []string{"s1", "s1", "*", "s2", "s1", "*", "s0", "s1", "*", "s1", "s1", "*"}
	if !slices.Equal(got, want) {
		t.Errorf("targets %v, want %v", got, want)
	}
}

// benchSamples returns the sample count of the text report's latency
// line number i (from 0).
func benchSamples(t *testing.T, stdout string, i int) int64 {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "latency (µs, ") {
			lines = append(lines, l)
		}
	}
	if i >= len(lines) {
		t.Fatalf("no latency line %d:\n%s", i, stdout)
	}
	_, after, _ := strings.Cut(lines[i], "  (")
	n, _, _ := strings.Cut(after, " samples")
	v, err := strconv.ParseInt(strings.ReplaceAll(n, ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("latency line %q: %v", lines[i], err)
	}
	return v
}

// One event in 64 carries its send time, also at the smallest payload:
// the receivers read the clock for those (and their last) only.
func TestBenchSampled(t *testing.T) {
	srv := bustest.Start(t, nil)
	for _, tc := range []struct {
		args    []string
		samples int64
	}{
		{[]string{"--msgs", "6400", "--size", "16"}, 100},
		{[]string{"--msgs", "6401", "--size", "16"}, 101},
		{[]string{"--mode", "broadcast", "--subs", "3", "--msgs", "640", "--size", "16"}, 30},
		{[]string{"--pubs", "2", "--subs", "2", "--msgs", "1280", "--size", "1024"}, 20},
		{[]string{"--mode", "reqrep", "--msgs", "50", "--size", "16"}, 50}, // every round trip
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := benchRunCmd(t, false, append([]string{"bench", "--pipe-name", srv.Addr()}, tc.args...)...)
			if code != 0 || !strings.Contains(stdout, "; lost 0\n") || stderr != "" {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if n := benchSamples(t, stdout, 0); n != tc.samples {
				t.Errorf("%d latency samples, want %d:\n%s", n, tc.samples, stdout)
			}
		})
	}
}

// --pairs N: N publishers and N subscribers, publisher i sending only to
// subscriber i: subscriber 0 gets publisher 0's share, one more than the
// others (in the mesh, subscriber 1 would).
func TestBenchPairs(t *testing.T) {
	srv := bustest.Start(t, nil)
	code, stdout, stderr := benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--pairs", "3", "--msgs", "3001", "--size", "16")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	wantLines(t, stdout,
		"statebus bench: unicast, 3 independent pair(s) (publisher i -> subscriber i), 3,001 events of 16 bytes\n",
		"delivered 3,001 events in ", "; lost 0\n")
	for j, want := range []string{"1,001", "1,000", "1,000"} {
		if !regexp.MustCompile(`-sub-` + strconv.Itoa(j) + ` +received +` + want + ` `).MatchString(stdout) {
			t.Errorf("subscriber %d did not receive %s:\n%s", j, want, stdout)
		}
	}
	code, stdout, stderr = benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--json", "--pairs", "2", "--mode", "reqrep", "--msgs", "101")
	if code != 0 {
		t.Fatalf("reqrep: exit %d, stderr:\n%s", code, stderr)
	}
	if res := benchDecode(t, stdout, "pairs"); res.Pairs != 2 || res.Pubs != 2 || res.Subs != 2 || res.Lost != 0 || res.Sent != 101 {
		t.Errorf("reqrep pairs: %+v", res)
	}
}

// --rate paces each publisher: a run cannot be faster than its rate, and
// the first event of each millisecond's batch carries the send time.
func TestBenchRate(t *testing.T) {
	srv := bustest.Start(t, nil)
	// 20,000/s in batches of 20: 200 batches, the last due at 199 ms.
	code, stdout, stderr := benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--rate", "20000", "--msgs", "4000", "--size", "16")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	wantLines(t, stdout, ", 4,000 events of 16 bytes, paced at 20,000/s per publisher\n", "; lost 0\n",
		"samples: the first event of each paced batch)\n")
	if n := benchSamples(t, stdout, 0); n != 200 {
		t.Errorf("%d samples, want 200", n)
	}
	code, stdout, stderr = benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--json", "--rate", "20000",
		"--pubs", "2", "--subs", "2", "--msgs", "8000", "--size", "16")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	res := benchDecode(t, stdout, "rate")
	if res.Rate != 20000 || res.Lost != 0 || res.Seconds < 0.199 {
		t.Errorf("2 publishers of 4,000 at 20,000/s each: %+v", res)
	}
	// Paced request/reply: 300 round trips at 1,000/s take 299 ms at least.
	code, stdout, stderr = benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--json", "--mode", "reqrep", "--rate", "1000", "--msgs", "300")
	if code != 0 {
		t.Fatalf("reqrep: exit %d, stderr:\n%s", code, stderr)
	}
	if res := benchDecode(t, stdout, "rate"); res.Lost != 0 || res.Seconds < 0.299 {
		t.Errorf("reqrep at 1,000/s: %+v", res)
	}
}

// --mode connect times connections one after another: connect and
// register, then close.
func TestBenchConnect(t *testing.T) {
	srv := bustest.Start(t, nil)
	code, stdout, stderr := benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--mode", "connect", "--msgs", "40")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	wantLines(t, stdout,
		"statebus bench: connect, 40 connections one after another: connect and register, then close\n",
		"connected and closed 40 in ", "; failed 0\n",
		"latency (µs, connect and register): p50 ", "latency (µs, close): p50 ")
	if n := benchSamples(t, stdout, 1); n != 40 {
		t.Errorf("%d close samples, want 40", n)
	}
	code, stdout, stderr = benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--mode", "connect", "--json", "--msgs", "25")
	if code != 0 {
		t.Fatalf("--json: exit %d, stderr:\n%s", code, stderr)
	}
	res := benchDecode(t, stdout, "close_latency_us")
	if res.Mode != "connect" || res.Msgs != 25 || res.Sent != 25 || res.Lost != 0 || res.MsgsPerSec <= 0 {
		t.Errorf("%+v", res)
	}
	for _, l := range []benchLatency{res.Latency, *res.CloseLatency} {
		if !(l.P50 > 0 && l.P50 <= l.P99 && l.P99 <= l.Max) {
			t.Errorf("latency %+v", l)
		}
	}
	// Nothing to connect to: the first connection fails, exit 1.
	code, _, stderr = benchRunCmd(t, false, "bench", "--pipe-name", bustest.SocketPath(t), "--mode", "connect", "--msgs", "3")
	if code != 1 || !strings.Contains(stderr, "connection 1 of 3: ") {
		t.Errorf("unreachable: exit %d, stderr %q", code, stderr)
	}
}

// --framing json is today's framing; compact needs the client library's
// statebus.WithFraming.
func TestBenchFraming(t *testing.T) {
	srv := bustest.Start(t, nil)
	code, stdout, stderr := benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--framing", "json", "--msgs", "500")
	if code != 0 || !strings.Contains(stdout, "of 128 bytes, json framing\n") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, mode := range []string{"unicast", "connect"} {
		code, stdout, stderr = benchRunCmd(t, false, "bench", "--pipe-name", srv.Addr(), "--json", "--framing", "compact", "--mode", mode, "--msgs", "50")
		if benchFramings["compact"] == nil {
			if code != 2 || stdout != "" || !strings.Contains(stderr, "--framing compact: this build's client library has no compact framing") {
				t.Errorf("%s: exit %d, stdout %q, stderr %q", mode, code, stdout, stderr)
			}
			continue
		}
		extra := []string{"framing"}
		if mode == "connect" {
			extra = append(extra, "close_latency_us")
		}
		if code != 0 {
			t.Fatalf("%s: exit %d, stderr:\n%s", mode, code, stderr)
		}
		if res := benchDecode(t, stdout, extra...); res.Framing != "compact" || res.Lost != 0 {
			t.Errorf("%s: %+v", mode, res)
		}
	}
}

// --framing compact against a service that does not offer it says so
// instead of measuring JSON lines under the compact name.
func TestBenchFramingRefused(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.NoCompactFraming = true })
	r := runCmd(t, "", "bench", "--pipe-name", srv.Addr(), "--framing", "compact", "--msgs", "10")
	if r.code == 0 || !strings.Contains(r.stderr, "does not offer the compact framing") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}
