package orchestrator_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/orchestrator"
	"github.com/statebus/statebus/statechart"
)

// toggleScript flips between two states on every T: the cheapest machine
// that changes state on each event.
const toggleScript = `{id: 't', initial: 'a', states: {a: {on: {T: 'b'}}, b: {on: {T: 'a'}}}}`

func loadToggle(b testing.TB) *statechart.Definition {
	d, err := statechart.Load([]byte(toggleScript), statechart.Implementations{})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// latencies records each round trip and reports the median and the 99th
// percentile.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	b.ReportMetric(float64(l[len(l)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(l[len(l)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkSendLocal: Send to a machine of this process and wait for its
// new state.
func BenchmarkSendLocal(b *testing.B) {
	o := newOrch(b)
	ctx := context.Background()
	if err := o.Register(ctx, "t", loadToggle(b)); err != nil {
		b.Fatal(err)
	}
	lat := make(latencies, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := o.Send(ctx, "main", "t", "T", nil); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	lat.report(b)
}

// BenchmarkPostLocal: Post to a machine of this process, as fast as its
// mailbox takes them (a full mailbox is waited out with a Send).
func BenchmarkPostLocal(b *testing.B) {
	o := newOrch(b)
	ctx := context.Background()
	if err := o.Register(ctx, "t", loadToggle(b)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := o.Post(ctx, "main", "t", "T", nil); err != nil {
			o.Send(ctx, "main", "t", "T", nil)
		}
	}
	o.Send(ctx, "main", "t", "T", nil)
}

var (
	statebusdOnce sync.Once
	statebusdPath string
	statebusdErr  error
)

// startStatebusd builds cmd/statebusd once and runs it on a temporary
// socket until the benchmark ends: the service in a process of its own.
func startStatebusd(b *testing.B) string {
	statebusdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sbbench")
		if err != nil {
			statebusdErr = err
			return
		}
		statebusdPath = filepath.Join(dir, "statebusd")
		out, err := exec.Command("go", "build", "-o", statebusdPath, "../cmd/statebusd").CombinedOutput()
		if err != nil {
			statebusdErr = &exec.ExitError{Stderr: out}
		}
	})
	if statebusdErr != nil {
		b.Fatalf("building statebusd: %v", statebusdErr)
	}
	dir, err := os.MkdirTemp("", "sb")
	if err != nil {
		b.Fatal(err)
	}
	pipe := filepath.Join(dir, "bus.sock")
	cmd := exec.Command(statebusdPath, "--pipe-name", pipe, "--http", "off")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		os.RemoveAll(dir)
	})
	eventually(b, 10*time.Second, func() bool {
		c, err := net.Dial("unix", pipe)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "statebusd never listened on %s", pipe)
	return pipe
}

// BenchmarkSendRemote: Send from a machine of this process to a machine
// of another process, through statebusd in a third, and wait for its new
// state: the orchestrated cross-process round trip.
func BenchmarkSendRemote(b *testing.B) {
	pipe := startStatebusd(b)
	startChild(b, "toggle", "far", pipe)
	o := newOrch(b, orchestrator.WithBus(statebus.WithPipeName(pipe)))
	ctx := context.Background()
	if err := o.Register(ctx, "near", loadToggle(b)); err != nil {
		b.Fatal(err)
	}
	lat := make(latencies, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := o.Send(ctx, "near", "far", "T", nil); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	lat.report(b)
}

// BenchmarkRequestRemote is the baseline of BenchmarkSendRemote: the same
// three processes, with plain clients: a Request to a responder that
// answers at once, without mailbox or machine.
func BenchmarkRequestRemote(b *testing.B) {
	pipe := startStatebusd(b)
	startChild(b, "responder", "far", pipe)
	ctx := context.Background()
	c, err := statebus.Dial(ctx, "near", statebus.WithPipeName(pipe))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	lat := make(latencies, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := c.Request(ctx, "far", "T", nil); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	lat.report(b)
}
