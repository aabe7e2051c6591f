package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
)

// startDurable runs statebusd as a child process on path with its durable
// store in dir and the ids "ctl*" durable.
func startDurable(t *testing.T, path, dir string) *exec.Cmd {
	t.Helper()
	cfg := filepath.Join(dir, "statebusd.json")
	os.WriteFile(cfg, []byte(`{"MessageBus": {"Durable": ["ctl*"], "DurableMaxEvents": 1000000, "DurableMaxBytes": 1073741824}}`), 0o600)
	cmd := statebusdCmd("--pipe-name", path, "--durable-dir", filepath.Join(dir, "store"), "--config", cfg)
	var out bytes.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := busaddr.Dial(context.Background(), path); err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("statebusd did not start: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawSender pipelines events to target on its own connection, event i
// with request Id i and payload i, and records which were acknowledged
// as stored.
type rawSender struct {
	mu      sync.Mutex
	acked   map[int]bool
	bad     []string
	answers int // responses read on the current connection
}

// run sends events from..to-1 until the connection breaks; it returns
// once the acknowledgements stop.
func (s *rawSender) run(t *testing.T, path, id, target string, from, to int) {
	c, err := busaddr.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.mu.Lock()
	s.answers = 0
	s.mu.Unlock()
	fmt.Fprintf(c, `{"Type":0,"Id":"r","Payload":{"MachineId":%q}}`+"\n", id)
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); err != nil || !strings.Contains(l, `"Success":true`) {
		t.Fatalf("register %s: %q %v", id, l, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			i := strings.LastIndex(l, `"Id":`)
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(l[i+5:]), "}"))
			s.mu.Lock()
			s.answers++
			if strings.Contains(l, `"Stored":true`) {
				s.acked[n] = true
			} else {
				s.bad = append(s.bad, l)
			}
			s.mu.Unlock()
		}
	}()
	w := bufio.NewWriterSize(c, 32<<10)
	written := 0
	for i := from; i < to; i++ {
		fmt.Fprintf(w, `{"Type":2,"Id":%d,"Payload":{"SourceMachineId":%q,"TargetMachineId":%q,"EventName":"E","Payload":%d}}`+"\n", i, id, target, i)
		written++
		if w.Buffered() > 16<<10 {
			if w.Flush() != nil {
				break
			}
		}
	}
	w.Flush()
	// Every event is answered, or the connection breaks.
	deadline := time.Now().Add(60 * time.Second)
	for {
		s.mu.Lock()
		all := s.answers >= written
		s.mu.Unlock()
		select {
		case <-done:
			return
		default:
		}
		if all || time.Now().After(deadline) {
			c.Close()
			<-done
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tally checks that the events got (payloads as handled) came once each
// and in order, and counts the acknowledged events missing from them and
// the events in them whose acknowledgement the sender did not read.
func (s *rawSender) tally(t *testing.T, got []int) (missing, unacked int) {
	t.Helper()
	seen := make(map[int]bool, len(got))
	for i, v := range got {
		if seen[v] {
			t.Fatalf("event %d delivered twice", v)
		}
		if i > 0 && v <= got[i-1] {
			t.Fatalf("out of order: %d after %d", v, got[i-1])
		}
		seen[v] = true
	}
	for i := range s.acked {
		if !seen[i] {
			missing++
		}
	}
	for _, v := range got {
		if !s.acked[v] {
			unacked++
		}
	}
	return missing, unacked
}

func (s *rawSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// TestDurableKilled: statebusd is SIGKILLed while 100,000 durable events
// stream in, and restarted on the same store. Every event whose
// "Stored" acknowledgement the sender read is delivered to the receiver
// (a Go client with WithDurable that stays up and reconnects) exactly
// once and in order; events stored whose acknowledgement was lost with
// the connection may be delivered too, also once.
func TestDurableKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n = 100_000
	dir, path := shortDir(t), busPath(t)
	proc := startDurable(t, path, dir)

	var mu sync.Mutex
	var got []int
	ctl, err := statebus.Dial(context.Background(), "ctl", statebus.WithPipeName(path), statebus.WithDurable(),
		statebus.WithReconnectBackoff(20*time.Millisecond, 100*time.Millisecond),
		statebus.WithPendingLimits(1<<20, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ctl.OnEvent("E", func(e statebus.Event) {
		v, _ := strconv.Atoi(string(e.Payload))
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	})
	handled := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	snd := &rawSender{acked: map[int]bool{}}
	sent := make(chan struct{})
	go func() { defer close(sent); snd.run(t, path, "src", "ctl", 0, n) }()
	deadline := time.Now().Add(60 * time.Second)
	for snd.count() < n/3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d acknowledged", snd.count())
		}
		time.Sleep(time.Millisecond)
	}
	proc.Process.Signal(syscall.SIGKILL)
	proc.Wait()
	<-sent
	ackedBefore, handledAtKill := snd.count(), handled()
	startDurable(t, path, dir)
	// The sender reconnects and goes on with 1,000 new events (it does not
	// send again what was not acknowledged: that would be a new event).
	const more = 1000
	snd.run(t, path, "src", "ctl", n, n+more)
	if len(snd.bad) > 0 {
		t.Fatalf("%d refusals, first %s", len(snd.bad), snd.bad[0])
	}
	deadline = time.Now().Add(120 * time.Second)
	for {
		mu.Lock()
		done := len(got) > 0 && got[len(got)-1] == n+more-1
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver handled %d events; the last is not %d", handled(), n+more-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	missing, unacked := snd.tally(t, got)
	t.Logf("killed after %d of %d events were acknowledged (the receiver had handled %d); %d more sent after the restart; %d acknowledged in all, %d delivered once each and in order, %d of those stored but their acknowledgement lost with the connection; %d acknowledged but not delivered",
		ackedBefore, n, handledAtKill, more, len(snd.acked), len(got), unacked, missing)
	if missing > 0 {
		t.Fatalf("%d acknowledged events were not delivered", missing)
	}
}

// runDurableReceiver is the child process of TestDurableReceiverKilled:
// it receives $STATEBUSD_TEST_DURABLE_RECEIVER's events with manual
// acknowledgements, prints "handling N" before and "acked N" after each,
// and never returns from the handler of sequence $STATEBUSD_TEST_BLOCK_AT.
func runDurableReceiver() {
	path, id := os.Getenv("STATEBUSD_TEST_PIPE"), os.Getenv("STATEBUSD_TEST_DURABLE_RECEIVER")
	blockAt, _ := strconv.ParseUint(os.Getenv("STATEBUSD_TEST_BLOCK_AT"), 10, 64)
	c, err := statebus.Dial(context.Background(), id, statebus.WithPipeName(path), statebus.WithManualAck())
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	c.OnEvent("E", func(e statebus.Event) {
		fmt.Printf("handling %d %s\n", e.Sequence, e.Payload)
		if e.Sequence == blockAt {
			select {} // killed in here
		}
		c.Ack(e.Sequence)
		fmt.Printf("acked %d\n", e.Sequence)
	})
	select {}
}

// TestDurableReceiverKilled: a receiver process is SIGKILLed in the middle
// of a handler; a new receiver process gets the mailbox's events again
// from the one after the last it acknowledged, the interrupted one
// first, in order, and none it acknowledged.
func TestDurableReceiverKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir, path := shortDir(t), busPath(t)
	startDurable(t, path, dir)
	snd := &rawSender{acked: map[int]bool{}}
	snd.run(t, path, "src", "ctl-w", 1, 101)
	if snd.count() != 100 {
		t.Fatalf("%d of 100 stored: %v", snd.count(), snd.bad)
	}
	receiver := func(blockAt int) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "STATEBUSD_TEST_PIPE="+path, "STATEBUSD_TEST_DURABLE_RECEIVER=ctl-w",
			"STATEBUSD_TEST_BLOCK_AT="+strconv.Itoa(blockAt))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, bufio.NewScanner(out)
	}
	first, sc := receiver(40)
	var firstOut []string
	for sc.Scan() && sc.Text() != "handling 40 40" {
		firstOut = append(firstOut, sc.Text())
	}
	// Mid-handler of 40: its acknowledgements of 1 to 39 reach the
	// service (the process is alive, its writer runs); then it is killed.
	acked := 0
	deadline := time.Now().Add(20 * time.Second)
	for acked != 39 {
		if time.Now().After(deadline) {
			t.Fatalf("the service recorded %d acknowledged, want 39; the receiver printed %q", acked, firstOut)
		}
		acked = acknowledged(t, path, "ctl-w")
		time.Sleep(5 * time.Millisecond)
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()

	_, sc = receiver(0)
	want := acked + 1
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "handling ") {
			continue
		}
		if l != fmt.Sprintf("handling %d %d", want, want) {
			t.Fatalf("second receiver: %q, want handling %d", l, want)
		}
		if want == 100 {
			break
		}
		want++
	}
	t.Logf("the first receiver was killed in the handler of 40 with 1 to %d acknowledged; the second got %d to 100, in order, first", acked, acked+1)
}

// acknowledged asks the service (Replay) for the last sequence mailbox id
// has acknowledged.
func acknowledged(t *testing.T, path, id string) int {
	c, err := busaddr.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, `{"Type":109,"Id":1,"Payload":{"MachineId":%q,"Limit":1}}`+"\n", id)
	line, _ := bufio.NewReader(c).ReadString('\n')
	const key = `"Acknowledged":`
	i := strings.Index(line, key)
	if i < 0 {
		t.Fatalf("Replay: %s", line)
	}
	rest := line[i+len(key):]
	n, _ := strconv.Atoi(rest[:strings.IndexAny(rest, ",}")])
	return n
}
