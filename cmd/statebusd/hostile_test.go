package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
)

// peakRSSKiB returns a process's peak resident set size (VmHWM).
func peakRSSKiB(t *testing.T, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestHostileClientsBounded: 98 clients that write as fast as they can and
// never read (half provoke error responses, half send each other
// near-maximal events), against a real statebusd allowing 100 connections
// with its default budgets. The daemon's peak RSS stays under 100 MiB plus
// 100 times the per-connection hard cap (MaxConnectionBytes 16 MiB plus the
// 1 MiB read buffer), every hostile client is cut off as a slow consumer,
// and a well-behaved pair keeps exchanging events meanwhile.
func TestHostileClientsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies the daemon's memory; .ci/run runs this test without it")
	}
	if runtime.GOOS != "linux" {
		t.Skip("Linux only: measures the daemon's peak memory from /proc")
	}
	path := filepath.Join(shortDir(t), "bus.sock")
	cmd, stderr := startProcess(t, path)
	pid := cmd.Process.Pid

	// The well-behaved pair: b echoes every event back to a.
	a, ar := rawConn(t, path, "good-a")
	b, br := rawConn(t, path, "good-b")
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if strings.Contains(line, `"EventName":"PING"`) {
				fmt.Fprintln(b, `{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"good-b","TargetMachineId":"good-a","EventName":"PONG"}}`)
			}
		}
	}()
	ping := func() time.Duration {
		start := time.Now()
		fmt.Fprintln(a, `{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"good-a","TargetMachineId":"good-b","EventName":"PING"}}`)
		a.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			line, err := ar.ReadString('\n')
			if err != nil {
				t.Fatalf("the healthy pair stalled: %v", err)
			}
			if strings.Contains(line, `"EventName":"PONG"`) {
				return time.Since(start)
			}
		}
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	var before []time.Duration
	for range 200 {
		before = append(before, ping())
	}

	const hostile = 98
	big := strings.Repeat("x", 1000_000)
	var wg sync.WaitGroup
	cut := make(chan int, hostile) // bytes each wrote before it was cut off
	for i := range hostile {
		c, err := busaddr.Dial(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		id := "hostile-" + strconv.Itoa(i)
		fmt.Fprintf(c, `{"Type":3,"Payload":%q}`+"\n", id)
		var line string
		if i%2 == 0 { // every line provokes an error response
			line = `{"Type":2,"Payload":{"SourceMachineId":"` + id + `","TargetMachineId":"nobody","EventName":"E"}}`
			line = strings.Repeat(line+"\n", 1000)
		} else { // near-maximal events to another hostile client
			line = `{"Type":2,"Payload":{"SourceMachineId":"` + id + `","TargetMachineId":"hostile-` +
				strconv.Itoa((i+2)%hostile) + `","EventName":"E","Payload":"` + big + `"}}` + "\n"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for n < 64<<20 { // bounded: 64 MiB each at most
				c.SetWriteDeadline(time.Now().Add(20 * time.Second))
				k, err := c.Write([]byte(line))
				n += k
				if err != nil {
					break
				}
			}
			cut <- n
		}()
	}
	var during []time.Duration
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
			during = append(during, ping())
		}
	}
	close(cut)
	notCut := 0
	for n := range cut {
		if n >= 64<<20 {
			notCut++
		}
	}
	peak := peakRSSKiB(t, pid)
	const budgetKiB = 100<<10 + 100*(16<<10+1<<10)
	t.Logf("daemon peak RSS %.1f MiB (bound %.0f MiB); healthy round trip p50 %v before, %v during (%d pings); %d hostile clients not cut off",
		float64(peak)/1024, float64(budgetKiB)/1024, median(before), median(during), len(during), notCut)
	if peak > budgetKiB {
		t.Errorf("peak RSS %d KiB over the budget %d KiB", peak, budgetKiB)
	}
	// The half that only provoked errors must all have been cut off; the
	// event senders may instead have been refused ("not keeping up") and
	// written on to the end of their 64 MiB.
	if notCut > hostile/2 {
		t.Errorf("%d hostile clients were never cut off", notCut)
	}
	if len(during) == 0 {
		t.Errorf("no round trip during the storm")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if !strings.Contains(stderr.String(), "closing slow consumer") {
		t.Errorf("no slow consumer was logged:\n%s", stderr.String())
	}
}
