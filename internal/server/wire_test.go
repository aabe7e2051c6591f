package server_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
)

func TestMain(m *testing.M) {
	if os.Getenv("STATEBUS_ACCESS_CHILD") == "1" {
		accessChild()
		return
	}
	goleak.VerifyTestMain(m, bustest.IgnoreWinio)
}

// raw is the .NET-shaped client the wire tests talk through.
type raw = bustest.Raw

func dialRaw(t *testing.T, srv *server.Server) *raw {
	t.Helper()
	return bustest.DialRaw(t, srv.Addr())
}

const ts = bustest.Timestamp

func TestWireRegisterSubscribe(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("machine-a")
	m := srv.Machines()
	// The kernel's word on who connected: a uid, or on Windows a SID.
	user := len(m) == 1 && (m[0].PeerUID >= 0 || runtime.GOOS == "windows" && strings.HasPrefix(m[0].PeerSID, "S-1-"))
	if len(m) != 1 || m[0].ProcessName != "TestClient" || m[0].ProcessID != 4242 ||
		m[0].PeerPID != os.Getpid() || !user || !m[0].Subscribed {
		t.Fatalf("registry: %+v", m)
	}
	// Type as the enum name, and \r\n line endings.
	a.Send("{\"Type\":\"Subscribe\",\"Payload\":\"machine-a\"}\r")
	a.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"machine-a","SubscribedAt":` + ts + `\},"Error":null\}`)
	// Subscribe without Register registers (the original allowed it).
	b := dialRaw(t, srv)
	b.Send(`{"Type":"Subscribe","Payload":"machine-b"}`)
	b.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"machine-b","SubscribedAt":` + ts + `\},"Error":null\}`)
	if h := srv.Health(); h.RegisteredMachines != 2 || h.ConnectionCount != 2 {
		t.Fatalf("health %+v", h)
	}
	b.Send(`{"Type":1,"Payload":"machine-b"}`)
	b.Expect(`{"Success":true,"Data":null,"Error":null}`)
	if h := srv.Health(); h.RegisteredMachines != 1 {
		t.Fatalf("after unregister: %+v", h)
	}
}

func TestWireSendEvent(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("machine-a")
	b := dialRaw(t, srv).Connect("machine-b")
	// The event object is forwarded byte for byte: spacing, key order,
	// escapes and unknown fields included.
	event := `{ "SourceMachineId":"machine-a", "TargetMachineId":"machine-b","EventName":"PING","Payload":{"Message":"Hello","Esc":"\u00e9\n","N":1.50},"Timestamp":"2025-10-03T17:16:09.8","Extra":[1]}`
	a.Send(`{"Type":2,"Payload":` + event + `}`)
	b.Expect(`{"Success":true,"Data":` + event + `,"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"machine-b"},"Error":null}`)

	// Null payload is an event like any other.
	a.Send(`{"Type":"SendEvent","Payload":{"SourceMachineId":"machine-a","TargetMachineId":"machine-b","EventName":"E","Payload":null}}`)
	b.Expect(`{"Success":true,"Data":{"SourceMachineId":"machine-a","TargetMachineId":"machine-b","EventName":"E","Payload":null},"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"machine-b"},"Error":null}`)
}

func TestWireErrors(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxMessageBytes = 1024 })
	a := dialRaw(t, srv).Connect("a")
	long := `{"Type":2,"Payload":"` + strings.Repeat("x", 5000) + `"}`
	for _, tc := range []struct{ line, want string }{
		{`not json`, "Invalid JSON format"},
		{`{"Type":0}`, "Payload is null"},
		{`{"Type":0,"Payload":null}`, "Payload is null"},
		{`{"Type":2}`, "Payload is null"},
		{`{"Type":9,"Payload":{}}`, "Unknown message type: 9"},
		{`{"Type":"Publish","Payload":{}}`, "Unknown message type: Publish"},
		{`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"nobody","EventName":"E"}}`, "Target machine not connected: nobody"},
		{`{"Type":2,"Payload":{"SourceMachineId":"a","EventName":"E"}}`, "TargetMachineId is required"},
		{`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"a"}}`, "EventName is required"},
		{`{"Type":0,"Payload":{"MachineId":""}}`, "Invalid machine id: must not be empty"},
		{`{"Type":3,"Payload":"*"}`, `Invalid machine id: \"*\" is reserved for broadcast`},
		{`[1]`, "Message must be a JSON object"},
		{`{"Type":3,"Payload":"` + strings.Repeat("x", 257) + `"}`, "Invalid machine id: longer than 256 bytes"},
		{`{"Type":3,"Payload":"a\u0007b"}`, "Invalid machine id: contains control characters"},
		{`{"Type":3,"Payload":7}`, "Payload (a machine id string) is required"},
		{`{"Type":0,"Payload":{"ProcessName":"p"}}`, "MachineId is required"},
		{"{\"Type\":2,\"Payload\":\"\xff\"}", "Invalid UTF-8 in message"},
		{`{"Type":2,"Payload":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`, "JSON nested deeper than 64 levels"},
		{`{"Type":2,"Payload":{"SourceMachineId":"nope","TargetMachineId":"a","EventName":"E"}}`, "Machine id not registered on this connection: nope"},
		{long, "Message exceeds 1024 bytes"},
	} {
		a.Send(tc.line)
		a.Expect(`{"Success":false,"Data":null,"Error":"` + tc.want + `"}`)
	}
	// Errors leave the connection working; blank lines are ignored.
	a.Send("")
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"SELF"}}`)
	a.Expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"SELF"},"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"a"},"Error":null}`)
}

func TestWireRequestID(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv)
	a.Send(`{"Type":0,"Id":1,"Payload":{"MachineId":"a"}}`)
	a.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"a","RegisteredAt":` + ts + `\},"Error":null,"Id":1\}`)
	a.Send(`{"Type":3,"Payload":"a","Id":"sub-1"}`)
	a.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"a","SubscribedAt":` + ts + `\},"Error":null,"Id":"sub-1"\}`)
	a.Send(`{"Type":2,"Id":18446744073709551615,"Payload":{"SourceMachineId":"a","TargetMachineId":"x","EventName":"E"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: x","Id":18446744073709551615}`)
	a.Send(`{"Type":2,"Id":3,"Payload":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"E"}}`)
	a.Expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"E"},"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"a"},"Error":null,"Id":3}`)
	a.Send(`{"Type":7,"Id":"q"}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Unknown message type: 7","Id":"q"}`)
}

func TestWireHijackAndSpoof(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	m := dialRaw(t, srv).Connect("mallory")
	m.Send(`{"Type":0,"Payload":{"MachineId":"a"}}`)
	m.Expect(`{"Success":false,"Data":null,"Error":"Machine id already in use: a"}`)
	m.Send(`{"Type":3,"Payload":"a"}`)
	m.Expect(`{"Success":false,"Data":null,"Error":"Machine id already in use: a"}`)
	m.Send(`{"Type":1,"Payload":"a"}`)
	m.Expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: a"}`)
	m.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"mallory","EventName":"E"}}`)
	m.Expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: a"}`)
	// a still gets its own events.
	m.Send(`{"Type":2,"Payload":{"SourceMachineId":"mallory","TargetMachineId":"a","EventName":"E"}}`)
	a.Expect(`{"Success":true,"Data":{"SourceMachineId":"mallory","TargetMachineId":"a","EventName":"E"},"Error":null}`)
}

func TestWireDisconnectCleanup(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	a.C.Close()
	bustest.Eventually(t, 5*time.Second, func() bool {
		h := srv.Health()
		return h.RegisteredMachines == 1 && h.ConnectionCount == 1
	}, "closed connection's id still registered: %+v", srv.Health())
	b.Send(`{"Type":2,"Payload":{"SourceMachineId":"b","TargetMachineId":"a","EventName":"E"}}`)
	b.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: a"}`)
	// The id is free for a new connection.
	dialRaw(t, srv).Connect("a")
}

func TestWireBroadcast(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	c := dialRaw(t, srv).Connect("c")
	dialRaw(t, srv) // connected but not subscribed: gets nothing
	ev := `{"SourceMachineId":"a","TargetMachineId":"*","EventName":"HELLO","Payload":{"X":1}}`
	a.Send(`{"Type":2,"Id":5,"Payload":` + ev + `}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"*","Recipients":2},"Error":null,"Id":5}`)
	b.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	c.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
}

func TestWireTooManyConnections(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxConnections = 2 })
	dialRaw(t, srv).Connect("a")
	dialRaw(t, srv).Connect("b")
	x := dialRaw(t, srv)
	x.Expect(`{"Success":false,"Data":null,"Error":"Too many connections (limit 2)"}`)
	x.C.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := x.R.ReadByte(); err == nil {
		t.Fatal("refused connection was not closed")
	}
	if h := srv.Health(); h.ConnectionCount != 2 {
		t.Fatalf("health %+v", h)
	}
}

func TestWireOrderAndBatching(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	// Many events in one write: all delivered, in order.
	var sb strings.Builder
	const n = 2000
	for i := range n {
		sb.WriteString(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `}}` + "\n")
	}
	go a.C.Write([]byte(sb.String()))
	for i := range n {
		b.Expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `},"Error":null}`)
	}
	for range n {
		a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
	}
}

func TestWireHealthExtension(t *testing.T) {
	srv := bustest.Start(t, nil)
	dialRaw(t, srv).Connect("a")
	x := dialRaw(t, srv)
	x.Send(`{"Type":100,"Id":1}`)
	x.ExpectMatch(`\{"Success":true,"Data":\{"IsHealthy":true,"ConnectionCount":2,"RegisteredMachines":1,"LastActivityAt":"[^"]+",.*\},"Error":null,"Id":1\}`)
	x.Send(`{"Type":"Machines"}`)
	x.ExpectMatch(`\{"Success":true,"Data":\[\{"MachineId":"a","ProcessName":"TestClient","ProcessId":4242,"PeerPid":\d+,.*\}\],"Error":null\}`)
}

// TestConnectionStorm: hundreds of connections at once beyond
// MaxConnections are refused with the error; existing clients keep
// exchanging events throughout.
func TestConnectionStorm(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxConnections = 20 })
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	const storm = 300
	var refused, served atomic.Int32
	var wg sync.WaitGroup
	for range storm {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := busaddr.Dial(context.Background(), srv.Addr())
			if err != nil {
				return // the backlog overflowed: also a refusal, by the kernel
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			switch {
			case line == `{"Success":false,"Data":null,"Error":"Too many connections (limit 20)"}`+"\n":
				refused.Add(1)
			case line == "":
				served.Add(1) // admitted: the handshake timeout or the test's end closes it
			}
		}()
	}
	// Meanwhile a and b keep talking.
	for i := range 200 {
		a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `}}`)
		b.Expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `},"Error":null}`)
		a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return refused.Load() >= storm-20 }, "refused %d of %d", refused.Load(), storm)
	srv.Shutdown(context.Background()) // closes the admitted ones
	wg.Wait()
	if h := srv.Status(); h.PeakConnections > 20 {
		t.Fatalf("peak %d connections, limit 20", h.PeakConnections)
	}
}

func TestWireNoAck(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	a.Send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`)
	b.Expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"},"Error":null}`)
	a.Send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"*","EventName":"B"}}`)
	b.Expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"*","EventName":"B"},"Error":null}`)
	// No acknowledgements came: the next line a reads is this error.
	a.Send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"x","EventName":"E"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: x"}`)
}

func TestWireRequestReply(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	ev := `{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q","Payload":{"N":1}}`
	a.Send(`{"Type":2,"Id":9,"Request":true,"TimeoutMs":5000,"Payload":` + ev + `}`)
	got := b.ExpectMatch(`\{"Success":true,"Data":` + regexp.QuoteMeta(ev) + `,"Error":null,"ReplyTo":(\d+),"Deadline":` + ts + `\}`)
	token := regexp.MustCompile(`"ReplyTo":(\d+)`).FindStringSubmatch(got)[1]
	b.Send(`{"Type":"Reply","Id":1,"Payload":{"ReplyTo":` + token + `,"Payload":{"Answer":42}}}`)
	a.Expect(`{"Success":true,"Data":{"Answer":42},"Error":null,"Id":9}`)
	b.Expect(`{"Success":true,"Data":null,"Error":null,"Id":1}`)
	// A second reply to the same token is refused.
	b.Send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Payload":1}}`)
	b.Expect(`{"Success":false,"Data":null,"Error":"No request is waiting for ReplyTo ` + token + `"}`)
	// An error reply.
	a.Send(`{"Type":2,"Id":10,"Request":true,"Payload":` + ev + `}`)
	got = b.ExpectMatch(`\{"Success":true,"Data":.*,"ReplyTo":(\d+)\}`)
	token = regexp.MustCompile(`"ReplyTo":(\d+)`).FindStringSubmatch(got)[1]
	b.Send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Error":"busy"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Responder error: busy","Id":10}`)
	// No responder.
	a.Send(`{"Type":2,"Id":11,"Request":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"x","EventName":"Q"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"No responder: x is not connected","Id":11}`)
	// The responder leaves with a request pending.
	a.Send(`{"Type":2,"Id":12,"Request":true,"Payload":` + ev + `}`)
	b.Read()
	b.C.Close()
	a.Expect(`{"Success":false,"Data":null,"Error":"No responder: b disconnected before replying","Id":12}`)
}

func TestWireGroups(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	w1 := dialRaw(t, srv).Connect("w1")
	w2 := dialRaw(t, srv).Connect("w2")
	w1.Send(`{"Type":"JoinGroup","Id":1,"Payload":{"Group":"workers"}}`)
	w1.Expect(`{"Success":true,"Data":null,"Error":null,"Id":1}`)
	w2.Send(`{"Type":103,"Payload":{"Group":"workers","MachineId":"w2"}}`)
	w2.Expect(`{"Success":true,"Data":null,"Error":null}`)
	a.Send(`{"Type":103,"Payload":{"Group":"workers","MachineId":"w1"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: w1"}`)
	ev := func(n string) string {
		return `{"SourceMachineId":"a","TargetMachineId":"@workers","EventName":"J","Payload":` + n + `}`
	}
	// Round-robin: one member each, acknowledged with the member's id.
	a.Send(`{"Type":2,"Payload":` + ev("1") + `}`)
	a.Send(`{"Type":2,"Payload":` + ev("2") + `}`)
	w1.Expect(`{"Success":true,"Data":` + ev("1") + `,"Error":null}`)
	w2.Expect(`{"Success":true,"Data":` + ev("2") + `,"Error":null}`)
	// Acknowledgements of different targets may come in either order.
	acks := []string{a.Read(), a.Read()}
	slices.Sort(acks)
	if acks[0] != `{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"w1"},"Error":null}` ||
		acks[1] != `{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"w2"},"Error":null}` {
		t.Fatalf("acks %q", acks)
	}
	// All members.
	all := `{"SourceMachineId":"a","TargetMachineId":"@workers:*","EventName":"J"}`
	a.Send(`{"Type":2,"Payload":` + all + `}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"@workers:*","Recipients":2},"Error":null}`)
	w1.Expect(`{"Success":true,"Data":` + all + `,"Error":null}`)
	w2.Expect(`{"Success":true,"Data":` + all + `,"Error":null}`)
	// A member that leaves (or dies) is out at once.
	w1.Send(`{"Type":"LeaveGroup","Payload":{"Group":"workers"}}`)
	w1.Expect(`{"Success":true,"Data":null,"Error":null}`)
	w2.C.Close()
	bustest.Eventually(t, 5*time.Second, func() bool { return srv.Health().ConnectionCount == 2 }, "w2 not gone")
	a.Send(`{"Type":2,"Payload":` + ev("3") + `}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: @workers"}`)
	a.Send(`{"Type":0,"Payload":{"MachineId":"@x"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Invalid machine id: \"@\" starts a group name"}`)
}

// TestWirePriority: a stuck receiver's queue holds 10,000 Normal events;
// one High event sent after them arrives within the receiver's first few
// reads once it reads again.
func TestWirePriority(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b") // does not read until the end
	var sb strings.Builder
	for i := range 10000 {
		sb.WriteString(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"N","Payload":"` +
			strings.Repeat("x", 100) + `","Seq":` + strconv.Itoa(i) + `}}` + "\n")
	}
	sb.WriteString(`{"Type":2,"Id":1,"Priority":"High","Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"URGENT"}}` + "\n")
	if _, err := a.C.Write([]byte(sb.String())); err != nil {
		t.Fatal(err)
	}
	// Wait until the service has read all of it: the High event's ack
	// comes only once it is written, so poll the queue instead.
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Stats().EventsReceived == 10001 }, "events not all read")
	b.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	var got []byte
	reads := 0
	for !bytes.Contains(got, []byte(`"EventName":"URGENT"`)) {
		n, err := b.C.Read(buf)
		if err != nil {
			t.Fatalf("after %d reads: %v", reads, err)
		}
		reads++
		got = append(got, buf[:n]...)
	}
	before := bytes.Count(got[:bytes.Index(got, []byte(`"EventName":"URGENT"`))], []byte("\n"))
	t.Logf("High event arrived in read %d, after %d of 10,000 queued Normal events", reads, before)
	if reads > 10 || before > 5000 {
		t.Fatalf("High event arrived in read %d after %d Normal events", reads, before)
	}
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null,"Id":1}`)
	a.Send(`{"Type":2,"Priority":"Urgent","Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Priority must be \"High\", \"Normal\" or \"Low\""}`)
}

func TestWireWatch(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("sensor-1")
	b := dialRaw(t, srv).Connect("b")
	m := dialRaw(t, srv)
	m.Send(`{"Type":"Watch","Id":1,"Payload":{"EventName":"ALARM_*","SourceMachineId":"sensor-*"}}`)
	m.Expect(`{"Success":true,"Data":{"WatchId":1},"Error":null,"Id":1}`)
	alarm := `{"SourceMachineId":"sensor-1","TargetMachineId":"b","EventName":"ALARM_FIRE","Payload":{"T":90}}`
	a.Send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"b","EventName":"PING"}}`)
	a.Send(`{"Type":2,"NoAck":true,"Payload":` + alarm + `}`)
	b.Read()
	b.Expect(`{"Success":true,"Data":` + alarm + `,"Error":null}`)
	m.Expect(`{"Success":true,"Data":` + alarm + `,"Error":null,"Watch":1}`) // not the PING
	// Events that are refused are not copied.
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"nobody","EventName":"ALARM_X"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: nobody"}`)
	m.Send(`{"Type":106,"Id":2,"Payload":{"WatchId":1}}`)
	m.Expect(`{"Success":true,"Data":null,"Error":null,"Id":2}`)
	m.Send(`{"Type":106,"Payload":{"WatchId":1}}`)
	m.Expect(`{"Success":false,"Data":null,"Error":"No such watch: 1"}`)
	if st := srv.Stats(); st.WatchCopies != 1 || st.WatchDropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWireRoutingRules(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.Routes = []router.RouteRule{
			{Match: router.RuleMatch{EventName: "ORDER_*"}, Action: "copy", To: "audit"},
			{Match: router.RuleMatch{EventName: "DEBUG_*"}, Action: "drop", Reason: "debug events are off"},
			{Match: router.RuleMatch{TargetMachineId: "billing"}, Action: "redirect", To: "billing-v2"},
		}
	})
	shop := dialRaw(t, srv).Connect("shop")
	audit := dialRaw(t, srv).Connect("audit")
	v2 := dialRaw(t, srv).Connect("billing-v2")
	order := `{"SourceMachineId":"shop","TargetMachineId":"billing","EventName":"ORDER_PLACED","Payload":{"Id":7}}`
	shop.Send(`{"Type":2,"Payload":` + order + `}`)
	// Redirected to billing-v2 (the event's bytes unchanged), copied to audit.
	v2.Expect(`{"Success":true,"Data":` + order + `,"Error":null}`)
	audit.Expect(`{"Success":true,"Data":` + order + `,"Error":null}`)
	shop.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"billing-v2"},"Error":null}`)
	shop.Send(`{"Type":2,"Payload":{"SourceMachineId":"shop","TargetMachineId":"billing-v2","EventName":"DEBUG_X"}}`)
	shop.Expect(`{"Success":false,"Data":null,"Error":"Event dropped: debug events are off"}`)
	// Rules reload; a loop is refused and the running rules stay.
	err := srv.SetRoutes([]router.RouteRule{
		{Match: router.RuleMatch{TargetMachineId: "a"}, Action: "redirect", To: "b"},
		{Match: router.RuleMatch{TargetMachineId: "b"}, Action: "redirect", To: "a"},
	})
	if err == nil || !strings.Contains(err.Error(), "routing rules loop") {
		t.Fatalf("loop accepted: %v", err)
	}
	shop.Send(`{"Type":2,"Payload":{"SourceMachineId":"shop","TargetMachineId":"billing-v2","EventName":"DEBUG_Y"}}`)
	shop.Expect(`{"Success":false,"Data":null,"Error":"Event dropped: debug events are off"}`)
	srv.SetRoutes(nil)
	shop.Send(`{"Type":2,"Payload":{"SourceMachineId":"shop","TargetMachineId":"billing","EventName":"E"}}`)
	shop.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: billing"}`)
	if st := srv.Stats(); st.Refused["dropped_by_rule"] != 2 {
		t.Fatalf("stats %+v", st)
	}
}
