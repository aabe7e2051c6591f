package durable_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/testdir"
)

// startDurable runs a server with durable mailboxes in a temporary store.
func startDurable(t *testing.T, dir string, edit func(*server.Config)) *server.Server {
	t.Helper()
	if dir == "" {
		dir = testdir.New(t)
	}
	return bustest.Start(t, func(c *server.Config) {
		c.Durable.Store = durable.DefaultConfig(dir)
		if edit != nil {
			edit(c)
		}
	})
}

// raw is the .NET-shaped client the wire tests talk through.
type raw = bustest.Raw

func dialRaw(t *testing.T, srv *server.Server) *raw {
	t.Helper()
	return bustest.DialRaw(t, srv.Addr())
}

func event(from, to string, i int) string {
	return `{"SourceMachineId":"` + from + `","TargetMachineId":"` + to + `","EventName":"E","Payload":` + strconv.Itoa(i) + `}`
}

// TestWireDurable: an event to a durable id is acknowledged as stored,
// with its sequence, whether or not the receiver is connected; the
// receiver gets it with Mailbox and Sequence after Error, in order, from
// its last acknowledged sequence after reconnecting; events to other ids
// are what they always were, byte for byte.
func TestWireDurable(t *testing.T) {
	srv := startDurable(t, "", nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).ConnectDurable("ctl")

	a.Send(`{"Type":2,"Id":1,"Payload":` + event("a", "ctl", 1) + `}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":false,"TargetMachineId":"ctl","Stored":true,"Sequence":1},"Error":null,"Id":1}`)
	b.Expect(`{"Success":true,"Data":` + event("a", "ctl", 1) + `,"Error":null,"Mailbox":"ctl","Sequence":1}`)
	b.Send(`{"Type":108,"Id":"k","Payload":{"MachineId":"ctl","Sequence":1}}`)
	b.Expect(`{"Success":true,"Data":null,"Error":null,"Id":"k"}`)

	// The receiver goes away; events wait for it.
	b.C.Close()
	bustest.Eventually(t, 5*time.Second, func() bool { return len(srv.Machines()) == 1 }, "ctl still registered")
	for i := 2; i <= 4; i++ {
		a.Send(`{"Type":2,"Payload":` + event("a", "ctl", i) + `}`)
		a.Expect(`{"Success":true,"Data":{"Delivered":false,"TargetMachineId":"ctl","Stored":true,"Sequence":` + strconv.Itoa(i) + `},"Error":null}`)
	}
	b = dialRaw(t, srv).Connect("ctl") // declared once is durable
	for i := 2; i <= 4; i++ {
		b.Expect(`{"Success":true,"Data":` + event("a", "ctl", i) + `,"Error":null,"Mailbox":"ctl","Sequence":` + strconv.Itoa(i) + `}`)
	}
	b.Send(`{"Type":108,"Payload":{"MachineId":"ctl","Sequence":3}}`)
	// Refused: handed over again, marked Rewound.
	b.Send(`{"Type":108,"Payload":{"MachineId":"ctl","Sequence":4,"Refuse":"not now"}}`)
	b.Expect(`{"Success":true,"Data":` + event("a", "ctl", 4) + `,"Error":null,"Mailbox":"ctl","Sequence":4,"Rewound":true}`)

	// Replay from a sequence.
	b.Send(`{"Type":109,"Id":7,"Payload":{"MachineId":"ctl","FromSequence":3,"Limit":1}}`)
	b.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"ctl","Events":\[\{"Sequence":3,"StoredAt":"[^"]+","Event":` +
		regexp.QuoteMeta(event("a", "ctl", 3)) + `\}\],"Next":4,"FirstSequence":1,"LastSequence":4,"Acknowledged":3\},"Error":null,"Id":7\}`)

	// A plain id: the original protocol's bytes.
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"ctl","TargetMachineId":"a","EventName":"X"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: ctl"}`)
	b.Send(`{"Type":2,"Payload":{"SourceMachineId":"ctl","TargetMachineId":"a","EventName":"X"}}`)
	a.Expect(`{"Success":true,"Data":{"SourceMachineId":"ctl","TargetMachineId":"a","EventName":"X"},"Error":null}`)
	b.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"a"},"Error":null}`)

	// Ack of an id the connection does not hold, or of a plain id.
	a.Send(`{"Type":108,"Payload":{"MachineId":"ctl","Sequence":4}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: ctl"}`)
	a.Send(`{"Type":108,"Payload":{"MachineId":"a","Sequence":4}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"No durable mailbox: a"}`)
}

// TestWireDurablePatterns: ids matching MessageBus:Durable store events
// before anyone registered them.
func TestWireDurablePatterns(t *testing.T) {
	srv := startDurable(t, "", func(c *server.Config) { c.Durable.Patterns = []string{"ctl-*"} })
	a := dialRaw(t, srv).Connect("a")
	a.Send(`{"Type":2,"Payload":` + event("a", "ctl-1", 1) + `}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":false,"TargetMachineId":"ctl-1","Stored":true,"Sequence":1},"Error":null}`)
	a.Send(`{"Type":2,"Payload":` + event("a", "other", 1) + `}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: other"}`)
	c := dialRaw(t, srv).Connect("ctl-1")
	c.Expect(`{"Success":true,"Data":` + event("a", "ctl-1", 1) + `,"Error":null,"Mailbox":"ctl-1","Sequence":1}`)
}

// TestDurableHostile: a restricted user may not declare durable ids
// outside its rule, nor read others' mailboxes; a sender that floods a
// durable mailbox is refused once it is full, and the store holds no
// more than the mailbox's limit.
func TestDurableHostile(t *testing.T) {
	uid := os.Geteuid()
	srv := startDurable(t, "", func(c *server.Config) {
		c.Access.Rules = []access.Rule{{UID: uid, Register: []string{"*"}, Durable: []string{"mine-*"}}}
		c.Durable.Store.Retention.MaxEvents = 50
	})
	a := dialRaw(t, srv).Connect("a")
	a.Send(`{"Type":0,"Payload":{"MachineId":"theirs","Durable":true}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Access denied: uid ` + strconv.Itoa(uid) + ` may not declare theirs durable"}`)
	for _, m := range srv.Machines() {
		if m.MachineID == "theirs" {
			t.Fatal("a refused durable declaration left the id registered")
		}
	}
	m := dialRaw(t, srv).ConnectDurable("mine-1")
	a.Send(`{"Type":109,"Payload":{"MachineId":"mine-1"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Access denied: uid ` + strconv.Itoa(uid) + ` may not read the mailbox of mine-1"}`)
	a.Send(`{"Type":110,"Payload":{}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Access denied: uid ` + strconv.Itoa(uid) + ` may not list every mailbox's dead letters"}`)

	// Flood: the receiver reads nothing and acknowledges nothing.
	m.C.Close()
	stored, full := 0, 0
	for i := range 200 {
		a.Send(`{"Type":2,"Payload":` + event("a", "mine-1", i) + `}`)
	}
	for range 200 {
		switch line := a.Read(); {
		case strings.Contains(line, `"Stored":true`):
			stored++
		case line == `{"Success":false,"Data":null,"Error":"Limit reached: durable mailbox mine-1 holds 50 unprocessed events (DurableMaxEvents); its receiver must catch up first"}`:
			full++
		default:
			t.Fatalf("unexpected %s", line)
		}
	}
	if stored != 50 || full != 150 {
		t.Fatalf("stored %d, refused %d; want 50 and 150", stored, full)
	}
}

// TestWireDurableSecondID: a connection that holds several ids may
// declare any of them durable; the deliveries of its mailbox name the id
// ("For", after Mailbox and Sequence) as every delivery on such a
// connection does, and its Ack is taken.
func TestWireDurableSecondID(t *testing.T) {
	srv := startDurable(t, "", nil)
	a := dialRaw(t, srv).Connect("a")
	r := dialRaw(t, srv).Connect("main").ConnectDurable("box")
	a.Send(`{"Type":2,"Id":1,"Payload":` + event("a", "box", 1) + `}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":false,"TargetMachineId":"box","Stored":true,"Sequence":1},"Error":null,"Id":1}`)
	r.Expect(`{"Success":true,"Data":` + event("a", "box", 1) + `,"Error":null,"Mailbox":"box","Sequence":1,"For":"box"}`)
	r.Send(`{"Type":108,"Id":"k","Payload":{"MachineId":"box","Sequence":1}}`)
	r.Expect(`{"Success":true,"Data":null,"Error":null,"Id":"k"}`)
	mb := srv.Durable().Lookup([]byte("box"))
	if info := srv.Durable().Info(mb); info.Acknowledged != 1 || !info.Attached {
		t.Fatalf("box: %+v", info)
	}
	// The first id is not durable: its events are delivered, not stored.
	a.Send(`{"Type":2,"Id":2,"Payload":` + event("a", "main", 2) + `}`)
	a.ExpectMatch(`\{"Success":true,"Data":\{"Delivered":true,"TargetMachineId":"main"\},"Error":null,"Id":2\}`)
}
