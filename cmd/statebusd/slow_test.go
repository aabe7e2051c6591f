package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
)

// rssKiB returns a process's resident set size from /proc.
func rssKiB(t *testing.T, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// rawConn registers id on a plain socket, as a .NET client would.
func rawConn(t *testing.T, path, id string) (net.Conn, *bufio.Reader) {
	c, err := busaddr.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, `{"Type":3,"Payload":%q}`+"\n", id)
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, "SubscribedAt") {
		t.Fatalf("subscribe %s: %q %v", id, line, err)
	}
	return c, r
}

// TestSlowConsumer: a receiver that stops reading while a sender pushes
// 1,000,000 events. The service's memory stays bounded, the sender always
// sees progress or errors, a healthy pair keeps flowing, and every event is
// accounted for: sent = acknowledged + refused.
func TestSlowConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("Linux only: measures the daemon's memory from /proc")
	}
	n := 1_000_000
	path := filepath.Join(shortDir(t), "bus.sock")
	cmd := exec.Command(os.Args[0], "--pipe-name", path, "--slow-consumer-timeout", "0.2")
	cmd.Env = append(os.Environ(), "STATEBUSD_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForSocket(t, path)
	baseRSS := rssKiB(t, cmd.Process.Pid)

	stuck, _ := rawConn(t, path, "stuck") // registers, then never reads again
	sender, sr := rawConn(t, path, "flood")

	// The healthy pair: measured alone first, then during the flood.
	a, err := statebus.Dial(context.Background(), "healthy-a", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := statebus.Dial(context.Background(), "healthy-b", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var got atomic.Int64
	b.OnEvent("H", func(statebus.Event) { got.Add(1) })
	healthy := func(k int) time.Duration {
		start := time.Now()
		want := got.Load() + int64(k)
		for i := range k {
			if err := a.PostEvent(context.Background(), "healthy-b", "H", i); err != nil {
				t.Error(err)
				return 0
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for got.Load() < want {
			if time.Now().After(deadline) {
				t.Errorf("healthy pair stalled: %d/%d", got.Load(), want)
				return 0
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}
	const k = 20000
	alone := healthy(k)

	// Count the sender's responses while it writes.
	var acks, refused, failed, other atomic.Int64
	var lastResponse atomic.Int64
	lastResponse.Store(time.Now().UnixNano())
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for acks.Load()+refused.Load()+failed.Load()+other.Load() < int64(n) {
			line, err := sr.ReadString('\n')
			if err != nil {
				return
			}
			lastResponse.Store(time.Now().UnixNano())
			switch {
			case strings.Contains(line, `"Delivered":true`):
				acks.Add(1)
			case strings.Contains(line, "Target machine is not keeping up: stuck"):
				refused.Add(1)
			case strings.Contains(line, "Failed to deliver event: stuck disconnected before the event was written"),
				// WriteTimeout closed the stuck receiver first; later
				// events find it gone.
				strings.Contains(line, "Failed to deliver event: stuck was closed as a slow consumer before the event was written"),
				strings.Contains(line, "Target machine not connected: stuck"):
				failed.Add(1)
			default:
				other.Add(1)
			}
		}
	}()
	line := []byte(`{"Type":2,"Payload":{"SourceMachineId":"flood","TargetMachineId":"stuck","EventName":"E","Payload":"` +
		strings.Repeat("x", 128) + `"}}` + "\n")
	batch := bytes.Repeat(line, 1000)
	writeDone := make(chan error, 1)
	go func() {
		for i := 0; i < n; i += 1000 {
			if _, err := sender.Write(batch); err != nil {
				writeDone <- err
				return
			}
		}
		writeDone <- nil
	}()

	during := healthy(k)
	peakRSS := 0
	// Never a hang without end: responses keep coming while the flood is
	// written. The events queued for the stuck receiver stay pending while
	// it lives; once the flood is answered but for those, the receiver
	// goes away and each of them must fail explicitly.
	writing := true
	for done := false; !done; {
		select {
		case <-readDone:
			done = true
		case err := <-writeDone:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		case <-time.After(100 * time.Millisecond):
			peakRSS = max(peakRSS, rssKiB(t, cmd.Process.Pid))
			idle := time.Since(time.Unix(0, lastResponse.Load()))
			if writing && idle > 10*time.Second {
				t.Fatalf("sender saw no progress for 10s: %d acked, %d refused, %d other",
					acks.Load(), refused.Load(), other.Load())
			}
			if !writing && idle > time.Second && stuck != nil {
				t.Logf("flood answered but for %d events queued for the stuck receiver; closing it",
					int64(n)-acks.Load()-refused.Load()-other.Load())
				stuck.Close()
				stuck = nil
			}
			if stuck == nil && idle > 10*time.Second {
				t.Fatalf("queued events never failed after the receiver left: %d acked, %d refused, %d failed",
					acks.Load(), refused.Load(), failed.Load())
			}
		}
	}
	t.Logf("%d sent: %d acknowledged, %d refused as slow, %d failed when the receiver left or was closed, %d other",
		n, acks.Load(), refused.Load(), failed.Load(), other.Load())
	t.Logf("statebusd RSS: %d KiB at start, %d KiB peak", baseRSS, peakRSS)
	t.Logf("healthy pair, %d events: %v alone, %v during the flood", k, alone, during)
	if acks.Load()+refused.Load()+failed.Load() != int64(n) || other.Load() != 0 {
		t.Fatalf("sent %d != acknowledged %d + refused %d + failed %d (other %d)",
			n, acks.Load(), refused.Load(), failed.Load(), other.Load())
	}
	if refused.Load() == 0 {
		t.Fatal("a stuck receiver never caused a refusal")
	}
	// The stuck target's queue is bounded at 4 MiB (plus the batch being
	// written); the service must not grow with the flood.
	bound := 64 << 10 // KiB
	if raceEnabled {
		bound *= 3
	}
	if peakRSS > baseRSS+bound {
		t.Fatalf("statebusd RSS grew from %d to %d KiB", baseRSS, peakRSS)
	}
	if during > 20*alone+2*time.Second {
		t.Fatalf("healthy pair slowed from %v to %v by the stuck receiver", alone, during)
	}
}

func waitForSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := busaddr.Dial(context.Background(), path); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("statebusd did not start on %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
