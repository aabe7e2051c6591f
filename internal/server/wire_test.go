package server_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
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

// raw is a client that talks bytes exactly as the .NET client does: a UTF-8
// BOM before its first line, one JSON object per line.
type raw struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	id string
}

func dialRaw(t *testing.T, srv *server.Server) *raw {
	t.Helper()
	c, err := busaddr.Dial(context.Background(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The BOM arrives in a write of its own, as with Mono. (A refused
	// connection may already be closed: its test reads why.)
	c.Write([]byte{0xEF, 0xBB, 0xBF})
	return &raw{t: t, c: c, r: bufio.NewReader(c)}
}

func (r *raw) send(line string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(line + "\n")); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) read() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// expect reads one line and checks it equals want exactly.
func (r *raw) expect(want string) {
	r.t.Helper()
	if got := r.read(); got != want {
		r.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// expectMatch reads one line and checks it matches the regexp.
func (r *raw) expectMatch(re string) string {
	r.t.Helper()
	got := r.read()
	if !regexp.MustCompile("^" + re + "$").MatchString(got) {
		r.t.Fatalf("got  %s\nwant /%s/", got, re)
	}
	return got
}

// ts matches a timestamp as .NET writes it: exactly 7 fractional digits.
const ts = `"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"`

// connect registers and subscribes id as the .NET client does.
func (r *raw) connect(id string) *raw {
	r.t.Helper()
	r.id = id
	r.send(`{"Type":0,"Payload":{"MachineId":"` + id + `","ProcessName":"TestClient","ProcessId":4242,"RegisteredAt":"2025-10-03T17:16:09.8123456Z"}}`)
	r.expectMatch(`\{"Success":true,"Data":\{"MachineId":"` + id + `","RegisteredAt":` + ts + `\},"Error":null\}`)
	r.send(`{"Type":3,"Payload":"` + id + `"}`)
	r.expectMatch(`\{"Success":true,"Data":\{"MachineId":"` + id + `","SubscribedAt":` + ts + `\},"Error":null\}`)
	return r
}

func TestWireRegisterSubscribe(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("machine-a")
	m := srv.Machines()
	// The kernel's word on who connected: a uid, or on Windows a SID.
	user := len(m) == 1 && (m[0].PeerUID >= 0 || runtime.GOOS == "windows" && strings.HasPrefix(m[0].PeerSID, "S-1-"))
	if len(m) != 1 || m[0].ProcessName != "TestClient" || m[0].ProcessID != 4242 ||
		m[0].PeerPID != os.Getpid() || !user || !m[0].Subscribed {
		t.Fatalf("registry: %+v", m)
	}
	// Type as the enum name, and \r\n line endings.
	a.send("{\"Type\":\"Subscribe\",\"Payload\":\"machine-a\"}\r")
	a.expectMatch(`\{"Success":true,"Data":\{"MachineId":"machine-a","SubscribedAt":` + ts + `\},"Error":null\}`)
	// Subscribe without Register registers (the original allowed it).
	b := dialRaw(t, srv)
	b.send(`{"Type":"Subscribe","Payload":"machine-b"}`)
	b.expectMatch(`\{"Success":true,"Data":\{"MachineId":"machine-b","SubscribedAt":` + ts + `\},"Error":null\}`)
	if h := srv.Health(); h.RegisteredMachines != 2 || h.ConnectionCount != 2 {
		t.Fatalf("health %+v", h)
	}
	b.send(`{"Type":1,"Payload":"machine-b"}`)
	b.expect(`{"Success":true,"Data":null,"Error":null}`)
	if h := srv.Health(); h.RegisteredMachines != 1 {
		t.Fatalf("after unregister: %+v", h)
	}
}

func TestWireSendEvent(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("machine-a")
	b := dialRaw(t, srv).connect("machine-b")
	// The event object is forwarded byte for byte: spacing, key order,
	// escapes and unknown fields included.
	event := `{ "SourceMachineId":"machine-a", "TargetMachineId":"machine-b","EventName":"PING","Payload":{"Message":"Hello","Esc":"\u00e9\n","N":1.50},"Timestamp":"2025-10-03T17:16:09.8","Extra":[1]}`
	a.send(`{"Type":2,"Payload":` + event + `}`)
	b.expect(`{"Success":true,"Data":` + event + `,"Error":null}`)
	a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"machine-b"},"Error":null}`)

	// Null payload is an event like any other.
	a.send(`{"Type":"SendEvent","Payload":{"SourceMachineId":"machine-a","TargetMachineId":"machine-b","EventName":"E","Payload":null}}`)
	b.expect(`{"Success":true,"Data":{"SourceMachineId":"machine-a","TargetMachineId":"machine-b","EventName":"E","Payload":null},"Error":null}`)
	a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"machine-b"},"Error":null}`)
}

func TestWireErrors(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxMessageBytes = 1024 })
	a := dialRaw(t, srv).connect("a")
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
		a.send(tc.line)
		a.expect(`{"Success":false,"Data":null,"Error":"` + tc.want + `"}`)
	}
	// Errors leave the connection working; blank lines are ignored.
	a.send("")
	a.send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"SELF"}}`)
	a.expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"SELF"},"Error":null}`)
	a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"a"},"Error":null}`)
}

func TestWireRequestID(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv)
	a.send(`{"Type":0,"Id":1,"Payload":{"MachineId":"a"}}`)
	a.expectMatch(`\{"Success":true,"Data":\{"MachineId":"a","RegisteredAt":` + ts + `\},"Error":null,"Id":1\}`)
	a.send(`{"Type":3,"Payload":"a","Id":"sub-1"}`)
	a.expectMatch(`\{"Success":true,"Data":\{"MachineId":"a","SubscribedAt":` + ts + `\},"Error":null,"Id":"sub-1"\}`)
	a.send(`{"Type":2,"Id":18446744073709551615,"Payload":{"SourceMachineId":"a","TargetMachineId":"x","EventName":"E"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: x","Id":18446744073709551615}`)
	a.send(`{"Type":2,"Id":3,"Payload":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"E"}}`)
	a.expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"a","EventName":"E"},"Error":null}`)
	a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"a"},"Error":null,"Id":3}`)
	a.send(`{"Type":7,"Id":"q"}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Unknown message type: 7","Id":"q"}`)
}

func TestWireHijackAndSpoof(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("a")
	m := dialRaw(t, srv).connect("mallory")
	m.send(`{"Type":0,"Payload":{"MachineId":"a"}}`)
	m.expect(`{"Success":false,"Data":null,"Error":"Machine id already in use: a"}`)
	m.send(`{"Type":3,"Payload":"a"}`)
	m.expect(`{"Success":false,"Data":null,"Error":"Machine id already in use: a"}`)
	m.send(`{"Type":1,"Payload":"a"}`)
	m.expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: a"}`)
	m.send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"mallory","EventName":"E"}}`)
	m.expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: a"}`)
	// a still gets its own events.
	m.send(`{"Type":2,"Payload":{"SourceMachineId":"mallory","TargetMachineId":"a","EventName":"E"}}`)
	a.expect(`{"Success":true,"Data":{"SourceMachineId":"mallory","TargetMachineId":"a","EventName":"E"},"Error":null}`)
}

func TestWireDisconnectCleanup(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("a")
	b := dialRaw(t, srv).connect("b")
	a.c.Close()
	bustest.Eventually(t, 5*time.Second, func() bool {
		h := srv.Health()
		return h.RegisteredMachines == 1 && h.ConnectionCount == 1
	}, "closed connection's id still registered: %+v", srv.Health())
	b.send(`{"Type":2,"Payload":{"SourceMachineId":"b","TargetMachineId":"a","EventName":"E"}}`)
	b.expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: a"}`)
	// The id is free for a new connection.
	dialRaw(t, srv).connect("a")
}

func TestWireBroadcast(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("a")
	b := dialRaw(t, srv).connect("b")
	c := dialRaw(t, srv).connect("c")
	dialRaw(t, srv) // connected but not subscribed: gets nothing
	ev := `{"SourceMachineId":"a","TargetMachineId":"*","EventName":"HELLO","Payload":{"X":1}}`
	a.send(`{"Type":2,"Id":5,"Payload":` + ev + `}`)
	a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"*","Recipients":2},"Error":null,"Id":5}`)
	b.expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	c.expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
}

func TestWireTooManyConnections(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxConnections = 2 })
	dialRaw(t, srv).connect("a")
	dialRaw(t, srv).connect("b")
	x := dialRaw(t, srv)
	x.expect(`{"Success":false,"Data":null,"Error":"Too many connections (limit 2)"}`)
	x.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := x.r.ReadByte(); err == nil {
		t.Fatal("refused connection was not closed")
	}
	if h := srv.Health(); h.ConnectionCount != 2 {
		t.Fatalf("health %+v", h)
	}
}

func TestWireOrderAndBatching(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("a")
	b := dialRaw(t, srv).connect("b")
	// Many events in one write: all delivered, in order.
	var sb strings.Builder
	const n = 2000
	for i := range n {
		sb.WriteString(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `}}` + "\n")
	}
	go a.c.Write([]byte(sb.String()))
	for i := range n {
		b.expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `},"Error":null}`)
	}
	for range n {
		a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
	}
}

func TestWireHealthExtension(t *testing.T) {
	srv := bustest.Start(t, nil)
	dialRaw(t, srv).connect("a")
	x := dialRaw(t, srv)
	x.send(`{"Type":100,"Id":1}`)
	x.expectMatch(`\{"Success":true,"Data":\{"IsHealthy":true,"ConnectionCount":2,"RegisteredMachines":1,"LastActivityAt":"[^"]+",.*\},"Error":null,"Id":1\}`)
	x.send(`{"Type":"Machines"}`)
	x.expectMatch(`\{"Success":true,"Data":\[\{"MachineId":"a","ProcessName":"TestClient","ProcessId":4242,"PeerPid":\d+,.*\}\],"Error":null\}`)
}

// TestConnectionStorm: hundreds of connections at once beyond
// MaxConnections are refused with the error; existing clients keep
// exchanging events throughout.
func TestConnectionStorm(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxConnections = 20 })
	a := dialRaw(t, srv).connect("a")
	b := dialRaw(t, srv).connect("b")
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
		a.send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `}}`)
		b.expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":` + strconv.Itoa(i) + `},"Error":null}`)
		a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
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
	a := dialRaw(t, srv).connect("a")
	b := dialRaw(t, srv).connect("b")
	a.send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`)
	b.expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"},"Error":null}`)
	a.send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"*","EventName":"B"}}`)
	b.expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"*","EventName":"B"},"Error":null}`)
	// No acknowledgements came: the next line a reads is this error.
	a.send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"x","EventName":"E"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: x"}`)
}

func TestWireRequestReply(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("a")
	b := dialRaw(t, srv).connect("b")
	ev := `{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q","Payload":{"N":1}}`
	a.send(`{"Type":2,"Id":9,"Request":true,"TimeoutMs":5000,"Payload":` + ev + `}`)
	got := b.expectMatch(`\{"Success":true,"Data":` + regexp.QuoteMeta(ev) + `,"Error":null,"ReplyTo":(\d+),"Deadline":` + ts + `\}`)
	token := regexp.MustCompile(`"ReplyTo":(\d+)`).FindStringSubmatch(got)[1]
	b.send(`{"Type":"Reply","Id":1,"Payload":{"ReplyTo":` + token + `,"Payload":{"Answer":42}}}`)
	a.expect(`{"Success":true,"Data":{"Answer":42},"Error":null,"Id":9}`)
	b.expect(`{"Success":true,"Data":null,"Error":null,"Id":1}`)
	// A second reply to the same token is refused.
	b.send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Payload":1}}`)
	b.expect(`{"Success":false,"Data":null,"Error":"No request is waiting for ReplyTo ` + token + `"}`)
	// An error reply.
	a.send(`{"Type":2,"Id":10,"Request":true,"Payload":` + ev + `}`)
	got = b.expectMatch(`\{"Success":true,"Data":.*,"ReplyTo":(\d+)\}`)
	token = regexp.MustCompile(`"ReplyTo":(\d+)`).FindStringSubmatch(got)[1]
	b.send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Error":"busy"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Responder error: busy","Id":10}`)
	// No responder.
	a.send(`{"Type":2,"Id":11,"Request":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"x","EventName":"Q"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"No responder: x is not connected","Id":11}`)
	// The responder leaves with a request pending.
	a.send(`{"Type":2,"Id":12,"Request":true,"Payload":` + ev + `}`)
	b.read()
	b.c.Close()
	a.expect(`{"Success":false,"Data":null,"Error":"No responder: b disconnected before replying","Id":12}`)
}

func TestWireGroups(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("a")
	w1 := dialRaw(t, srv).connect("w1")
	w2 := dialRaw(t, srv).connect("w2")
	w1.send(`{"Type":"JoinGroup","Id":1,"Payload":{"Group":"workers"}}`)
	w1.expect(`{"Success":true,"Data":null,"Error":null,"Id":1}`)
	w2.send(`{"Type":103,"Payload":{"Group":"workers","MachineId":"w2"}}`)
	w2.expect(`{"Success":true,"Data":null,"Error":null}`)
	a.send(`{"Type":103,"Payload":{"Group":"workers","MachineId":"w1"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: w1"}`)
	ev := func(n string) string {
		return `{"SourceMachineId":"a","TargetMachineId":"@workers","EventName":"J","Payload":` + n + `}`
	}
	// Round-robin: one member each, acknowledged with the member's id.
	a.send(`{"Type":2,"Payload":` + ev("1") + `}`)
	a.send(`{"Type":2,"Payload":` + ev("2") + `}`)
	w1.expect(`{"Success":true,"Data":` + ev("1") + `,"Error":null}`)
	w2.expect(`{"Success":true,"Data":` + ev("2") + `,"Error":null}`)
	// Acknowledgements of different targets may come in either order.
	acks := []string{a.read(), a.read()}
	slices.Sort(acks)
	if acks[0] != `{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"w1"},"Error":null}` ||
		acks[1] != `{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"w2"},"Error":null}` {
		t.Fatalf("acks %q", acks)
	}
	// All members.
	all := `{"SourceMachineId":"a","TargetMachineId":"@workers:*","EventName":"J"}`
	a.send(`{"Type":2,"Payload":` + all + `}`)
	a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"@workers:*","Recipients":2},"Error":null}`)
	w1.expect(`{"Success":true,"Data":` + all + `,"Error":null}`)
	w2.expect(`{"Success":true,"Data":` + all + `,"Error":null}`)
	// A member that leaves (or dies) is out at once.
	w1.send(`{"Type":"LeaveGroup","Payload":{"Group":"workers"}}`)
	w1.expect(`{"Success":true,"Data":null,"Error":null}`)
	w2.c.Close()
	bustest.Eventually(t, 5*time.Second, func() bool { return srv.Health().ConnectionCount == 2 }, "w2 not gone")
	a.send(`{"Type":2,"Payload":` + ev("3") + `}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: @workers"}`)
	a.send(`{"Type":0,"Payload":{"MachineId":"@x"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Invalid machine id: \"@\" starts a group name"}`)
}

// TestWirePriority: a stuck receiver's queue holds 10,000 Normal events;
// one High event sent after them arrives within the receiver's first few
// reads once it reads again.
func TestWirePriority(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("a")
	b := dialRaw(t, srv).connect("b") // does not read until the end
	var sb strings.Builder
	for i := range 10000 {
		sb.WriteString(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"N","Payload":"` +
			strings.Repeat("x", 100) + `","Seq":` + strconv.Itoa(i) + `}}` + "\n")
	}
	sb.WriteString(`{"Type":2,"Id":1,"Priority":"High","Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"URGENT"}}` + "\n")
	if _, err := a.c.Write([]byte(sb.String())); err != nil {
		t.Fatal(err)
	}
	// Wait until the service has read all of it: the High event's ack
	// comes only once it is written, so poll the queue instead.
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Stats().EventsReceived == 10001 }, "events not all read")
	b.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	var got []byte
	reads := 0
	for !bytes.Contains(got, []byte(`"EventName":"URGENT"`)) {
		n, err := b.c.Read(buf)
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
	a.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null,"Id":1}`)
	a.send(`{"Type":2,"Priority":"Urgent","Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Priority must be \"High\", \"Normal\" or \"Low\""}`)
}

func TestWireWatch(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).connect("sensor-1")
	b := dialRaw(t, srv).connect("b")
	m := dialRaw(t, srv)
	m.send(`{"Type":"Watch","Id":1,"Payload":{"EventName":"ALARM_*","SourceMachineId":"sensor-*"}}`)
	m.expect(`{"Success":true,"Data":{"WatchId":1},"Error":null,"Id":1}`)
	alarm := `{"SourceMachineId":"sensor-1","TargetMachineId":"b","EventName":"ALARM_FIRE","Payload":{"T":90}}`
	a.send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"b","EventName":"PING"}}`)
	a.send(`{"Type":2,"NoAck":true,"Payload":` + alarm + `}`)
	b.read()
	b.expect(`{"Success":true,"Data":` + alarm + `,"Error":null}`)
	m.expect(`{"Success":true,"Data":` + alarm + `,"Error":null,"Watch":1}`) // not the PING
	// Events that are refused are not copied.
	a.send(`{"Type":2,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"nobody","EventName":"ALARM_X"}}`)
	a.expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: nobody"}`)
	m.send(`{"Type":106,"Id":2,"Payload":{"WatchId":1}}`)
	m.expect(`{"Success":true,"Data":null,"Error":null,"Id":2}`)
	m.send(`{"Type":106,"Payload":{"WatchId":1}}`)
	m.expect(`{"Success":false,"Data":null,"Error":"No such watch: 1"}`)
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
	shop := dialRaw(t, srv).connect("shop")
	audit := dialRaw(t, srv).connect("audit")
	v2 := dialRaw(t, srv).connect("billing-v2")
	order := `{"SourceMachineId":"shop","TargetMachineId":"billing","EventName":"ORDER_PLACED","Payload":{"Id":7}}`
	shop.send(`{"Type":2,"Payload":` + order + `}`)
	// Redirected to billing-v2 (the event's bytes unchanged), copied to audit.
	v2.expect(`{"Success":true,"Data":` + order + `,"Error":null}`)
	audit.expect(`{"Success":true,"Data":` + order + `,"Error":null}`)
	shop.expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"billing-v2"},"Error":null}`)
	shop.send(`{"Type":2,"Payload":{"SourceMachineId":"shop","TargetMachineId":"billing-v2","EventName":"DEBUG_X"}}`)
	shop.expect(`{"Success":false,"Data":null,"Error":"Event dropped: debug events are off"}`)
	// Rules reload; a loop is refused and the running rules stay.
	err := srv.SetRoutes([]router.RouteRule{
		{Match: router.RuleMatch{TargetMachineId: "a"}, Action: "redirect", To: "b"},
		{Match: router.RuleMatch{TargetMachineId: "b"}, Action: "redirect", To: "a"},
	})
	if err == nil || !strings.Contains(err.Error(), "routing rules loop") {
		t.Fatalf("loop accepted: %v", err)
	}
	shop.send(`{"Type":2,"Payload":{"SourceMachineId":"shop","TargetMachineId":"billing-v2","EventName":"DEBUG_Y"}}`)
	shop.expect(`{"Success":false,"Data":null,"Error":"Event dropped: debug events are off"}`)
	srv.SetRoutes(nil)
	shop.send(`{"Type":2,"Payload":{"SourceMachineId":"shop","TargetMachineId":"billing","EventName":"E"}}`)
	shop.expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: billing"}`)
	if st := srv.Stats(); st.Refused["dropped_by_rule"] != 2 {
		t.Fatalf("stats %+v", st)
	}
}
