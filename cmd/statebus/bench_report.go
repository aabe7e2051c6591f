package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The payload is a JSON string of --size bytes: "x<padding>" or, when it
// carries its send time, "t<11 characters: the unix nanoseconds, 6 bits
// each><padding>". The string needs no escaping and every byte is ASCII.
const (
	benchMinSize  = 16
	benchStamped  = 't'
	benchPlain    = 'x'
	benchStampEnd = 2 + 11 // after the quote, the mark and 66 bits
)

// benchDigits are the 64 characters of a stamp, a digit per 6 bits.
const benchDigits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"

// benchDigitOf maps a character back to its 6 bits; -1 for others.
var benchDigitOf = func() (m [256]int8) {
	for i := range m {
		m[i] = -1
	}
	for i := range len(benchDigits) {
		m[benchDigits[i]] = int8(i)
	}
	return m
}()

// benchResult is the --json document.
type benchResult struct {
	Mode       string       `json:"mode"`
	Pubs       int          `json:"pubs"`
	Subs       int          `json:"subs"`
	Msgs       int64        `json:"msgs"`
	Size       int          `json:"size"`
	Seconds    float64      `json:"seconds"`
	MsgsPerSec float64      `json:"msgs_per_sec"`
	MBPerSec   float64      `json:"mb_per_sec"`
	Sent       int64        `json:"sent"` // events published (deliveries expected, in broadcast)
	Lost       int64        `json:"lost"`
	Latency    benchLatency `json:"latency_us"`
	// CloseLatency is --mode connect's time to close.
	CloseLatency *benchLatency `json:"close_latency_us,omitempty"`
	Pairs        int           `json:"pairs,omitempty"`
	Rate         int64         `json:"rate,omitempty"`    // per publisher, events/s
	Framing      string        `json:"framing,omitempty"` // as --framing gave it
	// Interrupted: the run was stopped (Ctrl-C) before it finished. Sent
	// and delivered are what happened until then; InFlight were sent but
	// had not arrived when the receivers stopped, and are not counted as
	// lost.
	Interrupted bool  `json:"interrupted,omitempty"`
	InFlight    int64 `json:"in_flight,omitempty"`

	got     int64             // events (round trips) delivered
	samples int64             // latencies recorded
	clients []benchClientLine // per client, for the text report
}

// benchClientLine is one client's share of the result.
type benchClientLine struct {
	id, verb string
	n        int64
	seconds  float64 // from the start to its last event
}

type benchLatency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// benchSummarize merges the receivers' histograms into the result and
// lists the refusals and failures the clients saw. grew is when the
// receivers' count last grew: the end for a receiver that did not get all
// it wanted (and so never read the clock for its last event).
func benchSummarize(cfg benchConfig, start, grew time.Time, pubs, subs, receivers []*benchClient) (benchResult, []string) {
	res := benchNewResult(cfg)
	hist := benchHistogram()
	var sent, bad int64
	end := start
	// lastOf is when b got its last event, or sent its last; b.mu is held.
	lastOf := func(b *benchClient) time.Time {
		if b.last.IsZero() && b.n.Load() > 0 {
			return grew
		}
		return b.last
	}
	line := func(b *benchClient, verb string, n int64) {
		l := benchClientLine{id: b.c.ID(), verb: verb, n: n}
		if last := lastOf(b); !last.IsZero() {
			l.seconds = last.Sub(start).Seconds()
		}
		res.clients = append(res.clients, l)
	}
	// A handler may still be running (Close does not wait for one that
	// is): read under the clients' locks.
	for _, p := range pubs {
		p.mu.Lock()
		sent += p.sent.Load()
		if cfg.mode == "reqrep" {
			line(p, "rtts", p.n.Load())
		} else {
			line(p, "sent", p.sent.Load())
		}
		p.mu.Unlock()
	}
	for _, s := range subs {
		s.mu.Lock()
		if cfg.mode == "reqrep" {
			line(s, "answered", s.n.Load())
		} else {
			line(s, "received", s.n.Load())
		}
		s.mu.Unlock()
	}
	if cfg.mode == "broadcast" {
		sent *= int64(cfg.subs)
	}
	for _, r := range receivers {
		r.mu.Lock()
		res.got += r.n.Load()
		bad += r.bad
		hist.Merge(r.hist)
		if last := lastOf(r); last.After(end) {
			end = last
		}
		r.mu.Unlock()
	}
	res.Sent = sent
	res.Lost = sent - res.got
	res.Seconds = end.Sub(start).Seconds()
	if res.Seconds > 0 {
		res.MsgsPerSec = float64(res.got) / res.Seconds
		res.MBPerSec = res.MsgsPerSec * float64(cfg.size) / 1e6
	}
	res.Latency, res.samples = benchLatencyOf(hist), hist.TotalCount()

	var failures []string
	if bad > 0 {
		failures = append(failures, fmt.Sprintf("%d events carried a payload that is not the bench's", bad))
	}
	for _, b := range append(pubs, subs...) {
		if n := b.refused.Load(); n > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d failures, the first: %v", b.c.ID(), n, b.err))
		}
	}
	return res, failures
}

// benchNewResult is a result that echoes cfg.
func benchNewResult(cfg benchConfig) benchResult {
	return benchResult{Mode: cfg.mode, Pubs: cfg.pubs, Subs: cfg.subs, Msgs: cfg.msgs, Size: cfg.size,
		Pairs: cfg.pairs, Rate: cfg.rate, Framing: cfg.framing}
}

// benchLatencyOf is h's percentiles in microseconds.
func benchLatencyOf(h *hdrhistogram.Histogram) benchLatency {
	us := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1e3 }
	return benchLatency{P50: us(50), P90: us(90), P99: us(99), P999: us(99.9), Max: float64(h.Max()) / 1e3}
}

// benchHistogram tracks 1 ns to an hour at 3 significant digits (about
// 270 KB).
func benchHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Hour), 3)
}

func benchWriteJSON(w io.Writer, res benchResult) {
	r3 := func(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
	res.Seconds = r3(res.Seconds)
	res.MsgsPerSec = r3(res.MsgsPerSec)
	res.MBPerSec = r3(res.MBPerSec)
	for _, l := range []*benchLatency{&res.Latency, res.CloseLatency} {
		if l != nil {
			l.P50, l.P90, l.P99, l.P999, l.Max = r3(l.P50), r3(l.P90), r3(l.P99), r3(l.P999), r3(l.Max)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(res)
}

// benchLatencyLine prints a latency line of the text report.
func benchLatencyLine(w io.Writer, kind string, l benchLatency, samples int64, how string) {
	fmt.Fprintf(w, "latency (µs, %s): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (%s samples%s)\n",
		kind, l.P50, l.P90, l.P99, l.P999, l.Max, benchCommas(samples), how)
}

func benchReport(w io.Writer, cfg benchConfig, res benchResult) {
	if cfg.mode == "connect" {
		benchConnectReport(w, cfg, res)
		return
	}
	what, kind := "events", "send to receive"
	if cfg.mode == "reqrep" {
		what, kind = "round trips", "round trip"
	}
	who := fmt.Sprintf("%d publisher(s) -> %d subscriber(s)", cfg.pubs, cfg.subs)
	if cfg.pairs > 0 {
		who = fmt.Sprintf("%d independent pair(s) (publisher i -> subscriber i)", cfg.pairs)
	}
	var extra string
	if cfg.rate > 0 {
		extra += fmt.Sprintf(", paced at %s/s per publisher", benchCommas(cfg.rate))
	}
	if cfg.framing != "" {
		extra += fmt.Sprintf(", %s framing", cfg.framing)
	}
	fmt.Fprintf(w, "statebus bench: %s, %s, %s %s of %d bytes%s\n",
		cfg.mode, who, benchCommas(cfg.msgs), what, cfg.size, extra)
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted: sent %s of %s %s; delivered %s in %.3fs: %s msgs/s, %.1f MB/s; %d in flight when stopped\n",
			benchCommas(res.Sent), benchCommas(res.Msgs), what, benchCommas(res.got), res.Seconds,
			benchCommas(int64(res.MsgsPerSec)), res.MBPerSec, res.InFlight)
	} else {
		fmt.Fprintf(w, "delivered %s %s in %.3fs: %s msgs/s, %.1f MB/s; lost %d\n",
			benchCommas(res.got), what, res.Seconds, benchCommas(int64(res.MsgsPerSec)), res.MBPerSec, res.Lost)
	}
	how := ""
	switch {
	case cfg.mode == "reqrep":
	case cfg.rate > 0:
		how = ": the first event of each paced batch"
	default:
		how = fmt.Sprintf(": 1 event in %d", benchSampleEvery)
	}
	benchLatencyLine(w, kind, res.Latency, res.samples, how)
	fmt.Fprintln(w, "per client:")
	for _, c := range res.clients {
		rate := 0.0
		if c.seconds > 0 {
			rate = float64(c.n) / c.seconds
		}
		fmt.Fprintf(w, "  %-28s %-8s %11s  %11s msgs/s  %7.1f MB/s\n", c.id, c.verb,
			benchCommas(c.n), benchCommas(int64(rate)), rate*float64(cfg.size)/1e6)
	}
}

// benchPayload returns a payload of size bytes without a stamp.
func benchPayload(size int) []byte {
	b := make([]byte, size)
	b[0], b[size-1] = '"', '"'
	for i := 1; i < size-1; i++ {
		b[i] = benchPlain
	}
	return b
}

// benchStamp writes t's unix nanoseconds into p and marks it stamped.
func benchStamp(p []byte, t time.Time) {
	v := uint64(t.UnixNano())
	for i := benchStampEnd - 1; i >= 2; i-- {
		p[i] = benchDigits[v&63]
		v >>= 6
	}
	p[1] = benchStamped
}

// benchUnstamp marks p as carrying no send time.
func benchUnstamp(p []byte) { p[1] = benchPlain }

// benchStampOf reads the send time benchStamp wrote: ok says p is a bench
// payload, stamped whether it carries a send time.
func benchStampOf(p []byte) (t int64, stamped, ok bool) {
	if len(p) < benchMinSize || p[0] != '"' || p[len(p)-1] != '"' {
		return 0, false, false
	}
	switch p[1] {
	case benchPlain:
		return 0, false, true
	case benchStamped:
	default:
		return 0, false, false
	}
	var v uint64
	for _, c := range p[2:benchStampEnd] {
		d := benchDigitOf[c]
		if d < 0 {
			return 0, false, false
		}
		v = v<<6 | uint64(d)
	}
	return int64(v), true, true
}

// benchCommas formats n with thousands separators.
func benchCommas(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i := range len(s) {
		if i > 0 && s[i-1] != '-' && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
