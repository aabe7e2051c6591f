package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
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
// documented fields.
func benchDecode(t *testing.T, stdout string) benchResult {
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
	want := []string{"latency_us", "lost", "mb_per_sec", "mode", "msgs", "msgs_per_sec", "pubs", "seconds", "sent", "size", "subs"}
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
		{[]string{"--mode", "fanout"}, `--mode must be unicast, broadcast or reqrep, not "fanout"`},
		{[]string{"--pubs", "0"}, "--pubs must be 1 to 256, not 0"},
		{[]string{"--subs", "1000"}, "--subs must be 1 to 256, not 1000"},
		{[]string{"--msgs", "0"}, "--msgs must be 1 to 100000000, not 0"},
		{[]string{"--size", "8"}, "--size must be 32 to 524288 bytes, not 8"},
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
	p := benchPayload(40)
	now := time.Now()
	benchStamp(p, now)
	if len(p) != 40 || !json.Valid(p) {
		t.Fatalf("payload %q", p)
	}
	if got, ok := benchStampOf(p); !ok || got != now.UnixNano() {
		t.Fatalf("stamp %d %v, want %d", got, ok, now.UnixNano())
	}
	if _, ok := benchStampOf([]byte(`{"x":1}`)); ok {
		t.Fatal("a foreign payload has a stamp")
	}
}
