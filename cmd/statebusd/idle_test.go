//go:build unix

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIdleConnections: 10,000 registered, idle connections. Reports the
// service's RSS per idle connection (under 12 KiB: under 8 since idle
// connections hold no read buffer, no writer goroutine and, once parked,
// no reader goroutine; 9 before parking, 18 before that) and the
// connect+register time percentiles.
func TestIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n = 10000
	// This process holds the client ends and the statebusd child the
	// server ends: each needs n descriptors and a few more.
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if need := uint64(n + 200); lim.Cur < need {
		if lim.Max < need {
			t.Skipf("file limit %d is below the %d this test needs", lim.Max, need)
		}
		lim.Cur = need
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Skipf("cannot raise the file limit to %d: %v", need, err)
		}
	}
	path := filepath.Join(shortDir(t), "bus.sock")
	cmd := exec.Command(os.Args[0], "--pipe-name", path, "--max-connections", fmt.Sprint(n+10))
	cmd.Env = append(os.Environ(), "STATEBUSD_TEST_MAIN=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForSocket(t, path)
	base := rssKiB(t, cmd.Process.Pid)

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	times := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, `{"Type":0,"Payload":{"MachineId":"idle-%d","ProcessName":"t","ProcessId":1}}`+"\n"+
			`{"Type":3,"Payload":"idle-%d"}`+"\n", i, i)
		r := bufio.NewReader(c)
		for _, want := range []string{"RegisteredAt", "SubscribedAt"} {
			line, err := r.ReadString('\n')
			if err != nil || !strings.Contains(line, want) {
				t.Fatalf("connection %d: %q %v", i, line, err)
			}
		}
		times = append(times, time.Since(start))
	}
	// Let the service settle: poll RSS until it has not changed for 3 s
	// (idle readers park within 2 s of their last input: the janitor's
	// ticks), for at most 30 s (5 s under the race detector, where the
	// figure is not checked).
	settle, most := time.Now(), 30*time.Second
	if raceEnabled {
		most = 5 * time.Second
	}
	rss := rssKiB(t, cmd.Process.Pid)
	for changed := settle; time.Since(changed) < 3*time.Second && time.Since(settle) < most; {
		time.Sleep(100 * time.Millisecond)
		if next := rssKiB(t, cmd.Process.Pid); next != rss {
			rss, changed = next, time.Now()
		}
	}
	t.Logf("RSS settled in %v", time.Since(settle).Round(100*time.Millisecond))
	slices.Sort(times)
	per := float64(rss-base) / n
	t.Logf("%d idle registered connections: statebusd RSS %d KiB -> %d KiB, %.1f KiB per connection", n, base, rss, per)
	t.Logf("connect+register: p50 %v, p99 %v, max %v", times[n/2], times[n*99/100], times[n-1])
	if !raceEnabled && per > 12 {
		t.Errorf("%.1f KiB per idle connection, want under 12", per)
	}
}
