package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// flood writes line until the connection fails or n lines are written,
// and reports how many it wrote.
func flood(c net.Conn, line string, n int) int {
	buf := []byte(strings.Repeat(line+"\n", 100))
	i := 0
	for ; i < n; i += 100 {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(buf); err != nil {
			break
		}
	}
	return i
}

// A client that provokes responses and never reads them: errors queue for
// it until they reach MaxConnectionBytes, and then it is closed as a slow
// consumer; the service never holds more than the cap for it.
func TestNeverReadingClientIsClosed(t *testing.T) {
	const limit = 256 << 10
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxMessageBytes = 4 << 10
		c.MaxQueueBytes = 64 << 10
		c.MaxConnectionBytes = limit
	})
	a := dialRaw(t, srv).Connect("flood")
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		p := 0
		for {
			select {
			case <-stop:
				peak <- p
				return
			default:
			}
			p = max(p, srv.Stats().QueuedBytes)
		}
	}()
	// Each line gets "Target machine not connected: nobody": 100 bytes.
	sent := flood(a.C, `{"Type":2,"Payload":{"SourceMachineId":"flood","TargetMachineId":"nobody","EventName":"E"}}`, 1_000_000)
	waitFor(t, "the slow consumer to be closed", func() bool { return srv.Stats().SlowConsumersClosed == 1 })
	close(stop)
	if p := <-peak; p > limit {
		t.Fatalf("the service held %d bytes for one connection; the cap is %d", p, limit)
	}
	if sent >= 1_000_000 {
		t.Fatalf("the flood was never cut off")
	}
	waitFor(t, "the id to be released", func() bool { return len(srv.Machines()) == 0 })
	// Others are served as before.
	b := dialRaw(t, srv).Connect("b")
	b.Send(`{"Type":100,"Id":1}`)
	b.ExpectMatch(`\{"Success":true,"Data":\{"IsHealthy":true.*`)
}

// Acknowledgements count against the sender's budget: a sender that never
// reads them is closed, and its healthy target is not disturbed.
func TestNeverReadingSenderIsClosed(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxMessageBytes = 4 << 10
		c.MaxQueueBytes = 64 << 10
		c.MaxConnectionBytes = 256 << 10
	})
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	go func() { // b reads everything
		buf := make([]byte, 64<<10)
		for {
			if _, err := b.C.Read(buf); err != nil {
				return
			}
		}
	}()
	flood(a.C, `{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`, 1_000_000)
	waitFor(t, "the sender to be closed", func() bool { return srv.Stats().SlowConsumersClosed == 1 })
	waitFor(t, "a's id to be released", func() bool { return len(srv.Machines()) == 1 })
	if m := srv.Machines(); m[0].MachineID != "b" {
		t.Fatalf("registry %+v", m)
	}
}

// Fan-out never waits for a full target: with eight connections that never
// read and a SlowConsumerTimeout of an hour, a broadcast is acknowledged at
// once and says how many it reached.
func TestBroadcastNeverWaits(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxMessageBytes = 4 << 10
		c.MaxQueueBytes = 16 << 10
		c.MaxConnectionBytes = 64 << 10
		c.SlowConsumerTimeout = time.Hour
	})
	for i := range 8 {
		s := dialRaw(t, srv).Connect("stuck-" + strconv.Itoa(i))
		s.Send(`{"Type":103,"Payload":{"Group":"g"}}`)
		s.Expect(`{"Success":true,"Data":null,"Error":null}`)
	}
	a := dialRaw(t, srv).Connect("a")
	big := strings.Repeat("x", 2000)
	ev := `{"SourceMachineId":"a","TargetMachineId":"*","EventName":"E","Payload":"` + big + `"}`
	// Enough to fill every stuck queue and the socket buffers behind them.
	for i := range 400 {
		a.Send(`{"Type":2,"Id":` + strconv.Itoa(i) + `,"Payload":` + ev + `}`)
		a.ExpectMatch(`\{"Success":true,"Data":\{"Delivered":true,"TargetMachineId":"\*","Recipients":\d\},"Error":null,"Id":` + strconv.Itoa(i) + `\}`)
	}
	a.Send(`{"Type":2,"Id":"last","Payload":` + ev + `}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"*","Recipients":0},"Error":null,"Id":"last"}`)
	a.Send(`{"Type":2,"Id":"group","Payload":{"SourceMachineId":"a","TargetMachineId":"@g:*","EventName":"E","Payload":"` + big + `"}}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"@g:*","Recipients":0},"Error":null,"Id":"group"}`)
	if st := srv.Stats(); st.Refused["slow_consumer"] == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Every per-connection limit answers with its exact text.
func TestPerConnectionLimits(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxIDsPerConnection = 2
		c.MaxGroupsPerConnection = 2
		c.MaxWatchesPerConnection = 1
		c.MaxPatternBytes = 8
		c.MaxPendingRequests = 1
	})
	a := dialRaw(t, srv).Connect("a1")
	a.Send(`{"Type":3,"Payload":"a2"}`)
	a.ExpectMatch(`\{"Success":true,.*`)
	a.Send(`{"Type":3,"Payload":"a3"}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: 2 machine ids per connection (MaxIdsPerConnection); unregister one first"}`)
	for _, g := range []string{"g1", "g2"} {
		a.Send(`{"Type":103,"Payload":{"Group":"` + g + `","MachineId":"a1"}}`)
		a.Expect(`{"Success":true,"Data":null,"Error":null}`)
	}
	a.Send(`{"Type":103,"Payload":{"Group":"g1","MachineId":"a1"}}`) // again: not an error
	a.Expect(`{"Success":true,"Data":null,"Error":null}`)
	a.Send(`{"Type":103,"Payload":{"Group":"g3","MachineId":"a2"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: 2 group memberships per connection (MaxGroupsPerConnection); leave a group first"}`)
	a.Send(`{"Type":105,"Payload":{"EventName":"123456789"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: a watch pattern is at most 8 bytes (MaxPatternBytes)"}`)
	a.Send(`{"Type":105,"Payload":{"EventName":"E*"}}`)
	a.ExpectMatch(`\{"Success":true,"Data":\{"WatchId":\d+\},"Error":null\}`)
	a.Send(`{"Type":105,"Payload":{"EventName":"F*"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: 1 watches per connection (MaxWatchesPerConnection); remove one with Unwatch first"}`)
	a.Send(`{"Type":100,"Id":"` + strings.Repeat("i", 65) + `"}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: a request Id is at most 64 bytes"}`)

	b := dialRaw(t, srv).Connect("b") // never replies
	req := `{"SourceMachineId":"a1","TargetMachineId":"b","EventName":"Q"}`
	a.Send(`{"Type":2,"Id":1,"Request":true,"Payload":` + req + `}`)
	b.ExpectMatch(`.*"ReplyTo":\d+\}`)
	a.Send(`{"Type":2,"Id":2,"Request":true,"Payload":` + req + `}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Limit reached: 1 requests waiting for replies on this connection (MaxPendingRequests); wait for some to finish","Id":2}`)
	if st := srv.Stats(); st.Refused["limit"] != 6 {
		t.Fatalf("limit refusals %d, want 6", st.Refused["limit"])
	}
}

// A request without TimeoutMs is not kept for ever: after RequestTimeout
// its caller hears that no reply came, and the slot is free again.
func TestRequestTimeout(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.RequestTimeout = 100 * time.Millisecond
		c.MaxPendingRequests = 1
	})
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	req := `{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q"}`
	for id := range 2 {
		a.Send(`{"Type":2,"Id":` + strconv.Itoa(id) + `,"Request":true,"Payload":` + req + `}`)
		b.ExpectMatch(`.*"ReplyTo":\d+\}`) // no Deadline: the caller gave none
		a.Expect(`{"Success":false,"Data":null,"Error":"No responder: b did not reply within 100ms","Id":` + strconv.Itoa(id) + `}`)
	}
}

// A responder's error can never pass for the service's own.
func TestResponderErrorIsMarked(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	a.Send(`{"Type":2,"Id":7,"Request":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q"}}`)
	got := b.ExpectMatch(`.*"ReplyTo":(\d+)\}`)
	token := regexp.MustCompile(`"ReplyTo":(\d+)`).FindStringSubmatch(got)[1]
	b.Send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Error":"No responder: c is not connected"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Responder error: No responder: c is not connected","Id":7}`)
}

// A request whose delivery waits on a full target that then disconnects
// gets exactly one response: the pending entry's owner answers, no one
// else.
func TestOneResponsePerRequest(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxMessageBytes = 4 << 10
		c.MaxQueueBytes = 8 << 10
		c.MaxConnectionBytes = 64 << 10
		c.SlowConsumerTimeout = time.Hour
	})
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	c := dialRaw(t, srv).Connect("c")
	big := strings.Repeat("x", 2000)
	ev := `{"SourceMachineId":"c","TargetMachineId":"b","EventName":"E","Payload":"` + big + `"}`
	// c fills b (which never reads) with NoAck events until one waits for
	// room: then b is full.
	var lines strings.Builder
	for range 400 {
		lines.WriteString(`{"Type":2,"NoAck":true,"Payload":` + ev + "}\n")
	}
	go c.C.Write([]byte(lines.String()))
	waitFor(t, "b's queue to fill", func() bool { return srv.Stats().QueuedBytes >= 4<<10 })
	// a's request now waits for room in b's queue, as a pending request.
	a.Send(`{"Type":2,"Id":"req","Request":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q"}}`)
	waitFor(t, "the request to wait", func() bool { return srv.Stats().PendingRequests == 1 })
	b.C.Close()
	n := 0
	for {
		line := a.Read()
		if strings.Contains(line, `"Id":"req"`) {
			n++
			if n == 1 {
				a.Send(`{"Type":100,"Id":"end"}`)
			}
		}
		if strings.Contains(line, `"Id":"end"`) {
			break
		}
	}
	if n != 1 {
		t.Fatalf("%d responses to one request", n)
	}
}

// Shutdown ends every connection through its one stop path: a client that
// connected just before it cannot make it wait for the handshake timeout.
func TestShutdownRacesHandshake(t *testing.T) {
	for i := range 100 {
		srv := bustest.Start(t, func(c *server.Config) { c.HandshakeTimeout = time.Hour })
		c, err := busaddr.Dial(context.Background(), srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if i%3 != 0 { // mid-handshake: the reader is busy with a Register
			c.Write([]byte(`{"Type":0,"Payload":{"MachineId":"m"}}` + "\n"))
		}
		if i%3 != 2 { // the connection is being accepted: no sleep, stop at once
			for deadline := time.Now().Add(10 * time.Second); srv.Health().ConnectionCount == 0; {
				if time.Now().After(deadline) {
					t.Fatal("the connection was never accepted")
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = srv.Shutdown(ctx)
		cancel()
		c.Close()
		if err != nil {
			t.Fatalf("run %d: Shutdown: %v", i, err)
		}
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A storm of refused connections cannot flood the log: one warning per
// kind per interval, and the next says how many were suppressed.
func TestRefusalWarningsRateLimited(t *testing.T) {
	var logs syncBuffer
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxConnections = 1
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	dialRaw(t, srv).Connect("a")
	for range 200 {
		c, err := busaddr.Dial(context.Background(), srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(c) // the refusal, then EOF
		c.Close()
	}
	if n := strings.Count(logs.String(), "too many connections"); n != 1 {
		t.Fatalf("%d warnings for 200 refusals:\n%s", n, logs.String())
	}
}

// A connection that put many ids into one group and disconnects is removed
// in time proportional to what it held: routing does not freeze. (Before,
// each id's removal copied the whole member list under the routing write
// lock: 20,000 ids took tens of seconds.)
func TestGroupTeardownIsLinear(t *testing.T) {
	const n = 30000
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxIDsPerConnection = n
		c.MaxGroupsPerConnection = n
	})
	a := dialRaw(t, srv).Connect("member-0")
	var batch strings.Builder
	for i := 1; i < n; i++ {
		id := "member-" + strconv.Itoa(i)
		batch.WriteString(`{"Type":3,"Payload":"` + id + `"}` + "\n")
		batch.WriteString(`{"Type":103,"Payload":{"Group":"g","MachineId":"` + id + `"}}` + "\n")
	}
	go a.C.Write([]byte(batch.String()))
	for i := 1; i < 2*n-1; i++ {
		a.ExpectMatch(`\{"Success":true,.*`)
	}
	b := dialRaw(t, srv).Connect("b")
	c := dialRaw(t, srv).Connect("c")
	a.C.Close()
	start := time.Now()
	b.Send(`{"Type":2,"Payload":{"SourceMachineId":"b","TargetMachineId":"c","EventName":"E"}}`)
	c.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"b".*`)
	waitFor(t, "the member ids to be dropped", func() bool { return len(srv.Machines()) == 2 })
	d := time.Since(start)
	// Linear, this takes well under a second here even under -race; a
	// teardown that scanned the member list once per member would grow with
	// the square of n. The bound guards against that, loose enough for a
	// loaded machine.
	t.Logf("dropping %d group members took %v", n, d)
	if d > 30*time.Second {
		t.Fatalf("dropping %d group members took %v", n, d)
	}
}

// Fan-out waits for a subscriber that is behind but reading: a broadcast
// flood to one that reads 256 bytes at a time loses nothing, while a
// subscriber that never reads misses what does not fit.
func TestBroadcastWaitsForSlowReader(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxMessageBytes = 4 << 10
		c.MaxQueueBytes = 16 << 10
		c.MaxConnectionBytes = 64 << 10
	})
	slow := dialRaw(t, srv).Connect("slow")
	dialRaw(t, srv).Connect("stuck")
	a := dialRaw(t, srv).Connect("a")
	const n = 1000
	got := make(chan int)
	go func() {
		// Small reads: far slower than the broadcaster, so its queue fills,
		// but never blocked for long, so it is never taken for stuck.
		buf := make([]byte, 256)
		lines := 0
		slow.C.SetReadDeadline(time.Now().Add(60 * time.Second))
		for lines < n {
			k, err := slow.C.Read(buf)
			lines += bytes.Count(buf[:k], []byte{'\n'})
			if err != nil {
				break
			}
		}
		got <- lines
	}()
	payload := strings.Repeat("x", 1000)
	var batch strings.Builder
	for i := range n {
		batch.WriteString(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"*","EventName":"E","Payload":"` + payload + strconv.Itoa(i) + `"}}` + "\n")
	}
	go a.C.Write([]byte(batch.String()))
	if lines := <-got; lines != n {
		t.Fatalf("the slow reader got %d of %d broadcasts", lines, n)
	}
	if st := srv.Stats(); st.Refused["slow_consumer"] == 0 {
		t.Fatalf("the stuck subscriber missed nothing: %+v", st.Refused)
	}
}

// A caller that goes away takes its requests with it: its target holds
// nothing for it (a Reply finds no request), so callers that come and go
// cannot pile requests up on a responder that does not answer.
func TestCallerGoneForgetsRequests(t *testing.T) {
	srv := bustest.Start(t, nil)
	b := dialRaw(t, srv).Connect("b")
	a := dialRaw(t, srv).Connect("a")
	a.Send(`{"Type":2,"Id":1,"Request":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q"}}`)
	got := b.ExpectMatch(`.*"ReplyTo":(\d+)\}`)
	token := regexp.MustCompile(`"ReplyTo":(\d+)`).FindStringSubmatch(got)[1]
	a.C.Close()
	waitFor(t, "a to be gone", func() bool { return srv.Health().ConnectionCount == 1 })
	b.Send(`{"Type":102,"Id":2,"Payload":{"ReplyTo":` + token + `,"Payload":1}}`)
	b.Expect(`{"Success":false,"Data":null,"Error":"No request is waiting for ReplyTo ` + token + `","Id":2}`)
	if st := srv.Stats(); st.PendingRequests != 0 {
		t.Fatalf("pending requests %d", st.PendingRequests)
	}
}

// An event queued behind a write its receiver never finishes is not
// waited on for ever: after WriteTimeout the receiver is closed as a slow
// consumer and the sender hears why.
func TestWriteTimeoutClosesStuckReceiver(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.MaxMessageBytes = 64 << 10
		c.MaxQueueBytes = 8 << 20
		c.MaxConnectionBytes = 32 << 20
		c.WriteTimeout = 300 * time.Millisecond
	})
	a := dialRaw(t, srv).Connect("a")
	stuck := stuckBehind(t, srv, a) // never reads again
	a.Send(`{"Type":2,"Id":"last","Payload":{"SourceMachineId":"a","TargetMachineId":"stuck","EventName":"E"}}`)
	// The NoAck events that were not written fail too (errors are sent
	// even without acknowledgements), before the last one's answer. On a
	// busy machine the janitor may close stuck before "last" is routed:
	// then "last" finds no target, and the queued events told why.
	const why = "Failed to deliver event: stuck was closed as a slow consumer before the event was written"
	told := false
	for {
		line := a.Read()
		if strings.Contains(line, why) && !strings.Contains(line, `"Id":"last"`) {
			told = true
		}
		if strings.Contains(line, `"Id":"last"`) {
			want := `{"Success":false,"Data":null,"Error":"` + why + `","Id":"last"}`
			gone := `{"Success":false,"Data":null,"Error":"Target machine not connected: stuck","Id":"last"}`
			if line != want && !(told && line == gone) {
				t.Fatalf("got  %s\nwant %s\n(or, once a queued event was told why, %s)", line, want, gone)
			}
			break
		}
	}
	if st := srv.Stats(); st.SlowConsumersClosed != 1 {
		t.Fatalf("slow consumers closed: %d", st.SlowConsumersClosed)
	}
	_ = stuck
}
