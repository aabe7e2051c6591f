package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/statebus/statebus"
)

// benchConnect times --msgs connections one after another: each connects
// and registers (Dial), then closes (Close). It stops at the first that
// fails.
func benchConnect(ctx context.Context, e *env, cfg benchConfig) (benchResult, []string) {
	res := benchNewResult(cfg)
	run := benchRunID()
	b := &benchClient{}
	opts := benchOptions(cfg, b)
	dial, closing := benchHistogram(), benchHistogram()
	var bar *progressbar.ProgressBar
	if e.tty && !cfg.json {
		bar = progressbar.NewOptions64(cfg.msgs, progressbar.OptionSetWriter(e.stdout),
			progressbar.OptionSetDescription(cfg.mode), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("conns"),
			progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}
	var failures []string
	start := time.Now()
	end := start
	for k := range cfg.msgs {
		if ctx.Err() != nil {
			break
		}
		res.Sent++
		t0 := time.Now()
		c, err := statebus.Dial(ctx, fmt.Sprintf("%s-conn-%d", run, k), opts...)
		t1 := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				failures = append(failures, fmt.Sprintf("connection %d of %d: %v", k+1, cfg.msgs, err))
			} else {
				res.Sent-- // stopped, not failed
			}
			break
		}
		c.Close()
		end = time.Now()
		dial.RecordValue(max(int64(t1.Sub(t0)), 1))
		closing.RecordValue(max(int64(end.Sub(t1)), 1))
		res.got++
		if bar != nil {
			bar.Set64(res.got)
		}
	}
	if bar != nil {
		bar.Clear()
	}
	if n := b.refused.Load(); n > 0 {
		failures = append(failures, fmt.Sprintf("%d failures, the first: %v", n, b.err))
	}
	res.Lost = res.Sent - res.got
	res.Seconds = end.Sub(start).Seconds()
	if res.Seconds > 0 {
		res.MsgsPerSec = float64(res.got) / res.Seconds
	}
	res.Latency, res.samples = benchLatencyOf(dial), dial.TotalCount()
	cl := benchLatencyOf(closing)
	res.CloseLatency = &cl
	return res, failures
}

// benchConnectReport is the text report of --mode connect.
func benchConnectReport(w io.Writer, cfg benchConfig, res benchResult) {
	extra := ""
	if cfg.framing != "" {
		extra = fmt.Sprintf(", %s framing", cfg.framing)
	}
	fmt.Fprintf(w, "statebus bench: connect, %s connections one after another: connect and register, then close%s\n",
		benchCommas(cfg.msgs), extra)
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted: connected and closed %s of %s in %.3fs: %s connections/s\n",
			benchCommas(res.got), benchCommas(res.Msgs), res.Seconds, benchCommas(int64(res.MsgsPerSec)))
	} else {
		fmt.Fprintf(w, "connected and closed %s in %.3fs: %s connections/s; failed %d\n",
			benchCommas(res.got), res.Seconds, benchCommas(int64(res.MsgsPerSec)), res.Lost)
	}
	benchLatencyLine(w, "connect and register", res.Latency, res.samples, "")
	if res.CloseLatency != nil {
		benchLatencyLine(w, "close", *res.CloseLatency, res.samples, "")
	}
}
