package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
)

// runTestClient is the child process of the fault tests: it connects as
// $STATEBUSD_TEST_CLIENT, says "ready" and sends events to
// $STATEBUSD_TEST_TARGET until it is killed.
func runTestClient() {
	path, id, target := os.Getenv("STATEBUSD_TEST_PIPE"), os.Getenv("STATEBUSD_TEST_CLIENT"), os.Getenv("STATEBUSD_TEST_TARGET")
	c, err := statebus.Dial(context.Background(), id, statebus.WithPipeName(path))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		c.SendEvent(context.Background(), target, "TICK", i)
	}
}

func machineIDs(t *testing.T, path string) []string {
	ms, err := statebus.Machines(context.Background(), statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.MachineID)
	}
	return ids
}

// TestClientKilled: a client process killed with SIGKILL mid-stream is gone
// from the registry within 100 ms; senders to it are told it is not
// connected; everyone else carries on.
func TestClientKilled(t *testing.T) {
	path := busPath(t)
	startProcess(t, path)
	obs, err := statebus.Dial(context.Background(), "observer", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	var ticks atomic.Int64
	obs.OnEvent("TICK", func(statebus.Event) { ticks.Add(1) })
	other, err := statebus.Dial(context.Background(), "bystander", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "STATEBUSD_TEST_PIPE="+path,
		"STATEBUSD_TEST_CLIENT=victim", "STATEBUSD_TEST_TARGET=observer")
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("child: %q", line)
	}
	// Mid-stream: the victim is sending.
	deadline := time.Now().Add(10 * time.Second)
	for ticks.Load() < 100 {
		if time.Now().After(deadline) {
			t.Fatal("no traffic from the child")
		}
		time.Sleep(time.Millisecond)
	}

	child.Process.Kill()
	child.Wait() // the process is gone: the kernel has closed its socket
	dead := time.Now()
	for slices.Contains(machineIDs(t, path), "victim") {
		if time.Since(dead) > time.Second {
			t.Fatal("killed client still registered after 1s")
		}
	}
	gone := time.Since(dead)
	t.Logf("killed client's id gone %v after its process exited", gone)
	if gone > 100*time.Millisecond {
		t.Errorf("killed client's id was still registered after %v (want < 100ms)", gone)
	}
	err = obs.SendEvent(context.Background(), "victim", "E", nil)
	if !errors.Is(err, statebus.ErrTargetNotConnected) || err.Error() != "Target machine not connected: victim" {
		t.Fatalf("send to the killed client: %v", err)
	}
	if err := other.SendEvent(context.Background(), "observer", "E", nil); err != nil {
		t.Fatalf("bystander affected: %v", err)
	}
}

// TestServiceKilled: statebusd is killed with SIGKILL during traffic and
// started again; the clients reconnect and traffic resumes without the
// program doing anything.
func TestServiceKilled(t *testing.T) {
	path := busPath(t)
	bus, _ := startProcess(t, path)
	reconnected := make(chan string, 2)
	opts := func(id string) []statebus.Option {
		return []statebus.Option{statebus.WithPipeName(path),
			statebus.WithReconnectBackoff(5*time.Millisecond, 100*time.Millisecond),
			statebus.WithStatusHandler(func(s statebus.StatusChange) {
				if s.From == statebus.Reconnecting && s.To == statebus.Connected {
					reconnected <- id
				}
			})}
	}
	a, err := statebus.Dial(context.Background(), "a", opts("a")...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := statebus.Dial(context.Background(), "b", opts("b")...)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var got atomic.Int64
	b.OnEvent("E", func(statebus.Event) { got.Add(1) })

	// Traffic that the program keeps sending through the outage.
	stop := make(chan struct{})
	sent := make(chan struct{})
	var failed atomic.Int64
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.SendEvent(context.Background(), "b", "E", i); err != nil {
				failed.Add(1)
				time.Sleep(time.Millisecond) // don't spin while the bus is down
			}
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("traffic", func() bool { return got.Load() > 100 })

	bus.Process.Kill()
	bus.Wait()
	waitFor("failures during the outage", func() bool { return failed.Load() > 0 })
	before := got.Load()
	startProcess(t, path) // replaces the stale socket
	for range 2 {
		select {
		case <-reconnected:
		case <-time.After(20 * time.Second):
			t.Fatal("clients did not reconnect")
		}
	}
	waitFor("traffic after the restart", func() bool { return got.Load() > before+100 })
	close(stop)
	<-sent
	t.Logf("%d events before the kill, %d sends failed during the outage, %d after", before, failed.Load(), got.Load()-before)
}
