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

// The payload is {"t":<19-digit unix nanos>,"p":"<padding>"}: fixed-offset
// send time, padded to --size bytes.
const (
	benchStampAt  = len(`{"t":`)
	benchStampEnd = benchStampAt + 19
	benchMinSize  = len(`{"t":1234567890123456789,"p":""}`)
)

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
	// Interrupted: the run was stopped (Ctrl-C) before it finished. Sent
	// and delivered are what happened until then; InFlight were sent but
	// had not arrived when the receivers stopped, and are not counted as
	// lost.
	Interrupted bool  `json:"interrupted,omitempty"`
	InFlight    int64 `json:"in_flight,omitempty"`

	got     int64             // events (round trips) delivered
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
// lists the refusals and failures the clients saw.
func benchSummarize(cfg benchConfig, start time.Time, pubs, subs, receivers []*benchClient) (benchResult, []string) {
	res := benchResult{Mode: cfg.mode, Pubs: cfg.pubs, Subs: cfg.subs, Msgs: cfg.msgs, Size: cfg.size}
	hist := benchHistogram()
	var sent, bad int64
	end := start
	line := func(b *benchClient, verb string, n int64, last time.Time) {
		l := benchClientLine{id: b.c.ID(), verb: verb, n: n}
		if !last.IsZero() {
			l.seconds = last.Sub(start).Seconds()
		}
		res.clients = append(res.clients, l)
	}
	// A handler may still be running (Close does not wait for one that
	// is): read under the clients' locks.
	for _, p := range pubs {
		p.mu.Lock()
		sent += p.sent
		if cfg.mode == "reqrep" {
			line(p, "rtts", p.n, p.last)
		} else {
			line(p, "sent", p.sent, p.last)
		}
		p.mu.Unlock()
	}
	for _, s := range subs {
		s.mu.Lock()
		if cfg.mode == "reqrep" {
			line(s, "answered", s.n, s.last)
		} else {
			line(s, "received", s.n, s.last)
		}
		s.mu.Unlock()
	}
	if cfg.mode == "broadcast" {
		sent *= int64(cfg.subs)
	}
	for _, r := range receivers {
		r.mu.Lock()
		res.got += r.n
		bad += r.bad
		hist.Merge(r.hist)
		if r.last.After(end) {
			end = r.last
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
	us := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1e3 }
	res.Latency = benchLatency{P50: us(50), P90: us(90), P99: us(99), P999: us(99.9), Max: float64(hist.Max()) / 1e3}

	var failures []string
	if bad > 0 {
		failures = append(failures, fmt.Sprintf("%d events carried no send time", bad))
	}
	for _, b := range append(pubs, subs...) {
		if n := b.refused.Load(); n > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d failures, the first: %v", b.c.ID(), n, b.err))
		}
	}
	return res, failures
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
	l := &res.Latency
	l.P50, l.P90, l.P99, l.P999, l.Max = r3(l.P50), r3(l.P90), r3(l.P99), r3(l.P999), r3(l.Max)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(res)
}

func benchReport(w io.Writer, cfg benchConfig, res benchResult) {
	what, kind := "events", "send to receive"
	if cfg.mode == "reqrep" {
		what, kind = "round trips", "round trip"
	}
	fmt.Fprintf(w, "statebus bench: %s, %d publisher(s) -> %d subscriber(s), %s %s of %d bytes\n",
		cfg.mode, cfg.pubs, cfg.subs, benchCommas(cfg.msgs), what, cfg.size)
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted: sent %s of %s %s; delivered %s in %.3fs: %s msgs/s, %.1f MB/s; %d in flight when stopped\n",
			benchCommas(res.Sent), benchCommas(res.Msgs), what, benchCommas(res.got), res.Seconds,
			benchCommas(int64(res.MsgsPerSec)), res.MBPerSec, res.InFlight)
	} else {
		fmt.Fprintf(w, "delivered %s %s in %.3fs: %s msgs/s, %.1f MB/s; lost %d\n",
			benchCommas(res.got), what, res.Seconds, benchCommas(int64(res.MsgsPerSec)), res.MBPerSec, res.Lost)
	}
	l := res.Latency
	fmt.Fprintf(w, "latency (µs, %s): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
		kind, l.P50, l.P90, l.P99, l.P999, l.Max)
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

// benchPayload returns a payload of size bytes with room for the stamp.
func benchPayload(size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, `{"t":`...)
	b = append(b, "1000000000000000000"...)
	b = append(b, `,"p":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// benchStamp writes t's unix nanoseconds into p. They have 19 digits from
// 2001 to 2286.
func benchStamp(p []byte, t time.Time) {
	v := t.UnixNano()
	for i := benchStampEnd - 1; i >= benchStampAt; i-- {
		p[i] = byte('0' + v%10)
		v /= 10
	}
}

// benchStampOf reads the send time benchStamp wrote.
func benchStampOf(p []byte) (int64, bool) {
	if len(p) < benchStampEnd || string(p[:benchStampAt]) != `{"t":` {
		return 0, false
	}
	var v int64
	for _, c := range p[benchStampAt:benchStampEnd] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
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
