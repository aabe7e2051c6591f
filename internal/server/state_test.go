package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/protocol"
)

// machinesOf asks the service for its registry on a raw connection and
// returns each id's State, and whether the entry had a State member.
func machinesOf(t *testing.T, r *raw) map[string]*string {
	t.Helper()
	r.Send(`{"Type":101,"Id":"m"}`)
	line := r.Read()
	var resp struct {
		Data []map[string]any
	}
	if err := json.Unmarshal([]byte(line), &resp); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	out := make(map[string]*string)
	for _, m := range resp.Data {
		id := m["MachineId"].(string)
		out[id] = nil
		if s, ok := m["State"].(string); ok {
			out[id] = &s
		}
	}
	return out
}

// TestWireSetState: the connection that holds an id records its state,
// Machines shows it, an empty state clears it; entries that never set one
// (every .NET client's) have no State member at all.
func TestWireSetState(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("ping")
	b := dialRaw(t, srv).Connect("dotnet")
	tool := dialRaw(t, srv)

	a.Send(`{"Type":107,"Id":1,"Payload":{"MachineId":"ping","State":"#ping.pinging"}}`)
	a.Expect(`{"Success":true,"Data":null,"Error":null,"Id":1}`)
	a.Send(`{"Type":"SetState","Payload":{"MachineId":"ping","State":"#ping.a;#ping.b \u00e9"}}`)
	a.Expect(`{"Success":true,"Data":null,"Error":null}`)
	m := machinesOf(t, tool)
	if m["ping"] == nil || *m["ping"] != "#ping.a;#ping.b é" || m["dotnet"] != nil {
		t.Fatalf("registry states: ping %v, dotnet %v", m["ping"], m["dotnet"])
	}
	if got := srv.MachineInfos(); got[1].MachineID != "ping" || got[1].State != "#ping.a;#ping.b é" {
		t.Fatalf("MachineInfos: %+v", got)
	}
	// The .NET client's traffic is byte for byte what it was.
	b.Send(`{"Type":2,"Payload":{"SourceMachineId":"dotnet","TargetMachineId":"ping","EventName":"PING"}}`)
	a.Expect(`{"Success":true,"Data":{"SourceMachineId":"dotnet","TargetMachineId":"ping","EventName":"PING"},"Error":null}`)
	b.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"ping"},"Error":null}`)

	a.Send(`{"Type":107,"Id":2,"Payload":{"MachineId":"ping","State":""}}`)
	a.Expect(`{"Success":true,"Data":null,"Error":null,"Id":2}`)
	if m := machinesOf(t, tool); m["ping"] != nil {
		t.Fatalf("cleared state still listed: %q", *m["ping"])
	}
	// A new registration of the id starts without a state.
	a.Send(`{"Type":107,"Payload":{"MachineId":"ping","State":"x"}}`)
	a.Expect(`{"Success":true,"Data":null,"Error":null}`)
	a.Send(`{"Type":1,"Payload":"ping"}`)
	a.Expect(`{"Success":true,"Data":null,"Error":null}`)
	a.Connect("ping")
	if m := machinesOf(t, tool); m["ping"] != nil {
		t.Fatalf("state survived Unregister: %q", *m["ping"])
	}
}

// TestSetStateHostile: oversized, forged, malformed and invisible states
// are refused with the exact texts, and leave the registry as it was.
func TestSetStateHostile(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	b.Send(`{"Type":107,"Payload":{"MachineId":"b","State":"mine"}}`)
	b.Expect(`{"Success":true,"Data":null,"Error":null}`)
	tool := dialRaw(t, srv)
	for _, tc := range []struct{ line, want string }{
		{`{"Type":107,"Payload":{"MachineId":"b","State":"forged"}}`, "Machine id not registered on this connection: b"},
		{`{"Type":107,"Payload":{"MachineId":"nobody","State":"x"}}`, "Machine id not registered on this connection: nobody"},
		{`{"Type":107,"Payload":{"MachineId":"a","State":"` + strings.Repeat("x", protocol.MaxStateBytes+1) + `"}}`, "Limit reached: a State is at most 256 bytes"},
		{`{"Type":107,"Payload":{"MachineId":"a","State":"` + strings.Repeat("é", 129) + `"}}`, "Limit reached: a State is at most 256 bytes"},
		{`{"Type":107,"Payload":{"MachineId":"a","State":"a\nb"}}`, "State must not contain control, invisible or bidirectional-control characters"},
		{`{"Type":107,"Payload":{"MachineId":"a","State":"a\u202eb"}}`, "State must not contain control, invisible or bidirectional-control characters"},
		{`{"Type":107,"Payload":{"MachineId":"a","State":"a\u0085b"}}`, "State must not contain control, invisible or bidirectional-control characters"},
		{`{"Type":107,"Payload":{"MachineId":"a"}}`, "State is required"},
		{`{"Type":107,"Payload":{"MachineId":"a","State":7}}`, "State is required"},
		{`{"Type":107,"Payload":{"State":"x"}}`, "MachineId is required"},
		{`{"Type":107,"Payload":"a"}`, "Payload (a state object) is required"},
		{`{"Type":107}`, "Payload is null"},
	} {
		a.Send(tc.line)
		a.Expect(`{"Success":false,"Data":null,"Error":"` + tc.want + `"}`)
	}
	m := machinesOf(t, tool)
	if m["a"] != nil || m["b"] == nil || *m["b"] != "mine" {
		t.Fatalf("after the refusals: a %v, b %v", m["a"], m["b"])
	}
	// A tool connection holds no id: it may set nobody's state.
	tool.Send(`{"Type":107,"Payload":{"MachineId":"b","State":"forged"}}`)
	tool.Expect(`{"Success":false,"Data":null,"Error":"Machine id not registered on this connection: b"}`)
}

// TestSetStateFlood: a connection that sets its state as fast as it can
// write, without reading the answers, holds up nobody's events, and what
// the registry keeps is its last state (one per id, however many sets).
func TestSetStateFlood(t *testing.T) {
	srv := bustest.Start(t, nil)
	flood := dialRaw(t, srv).Connect("flood")
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	const n = 20000
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, `{"Type":107,"Payload":{"MachineId":"flood","State":"#m.s%d;%s"}}`+"\n", i, strings.Repeat("x", 200))
	}
	written := make(chan error, 1)
	go func() {
		_, err := flood.C.Write([]byte(batch.String()))
		written <- err
	}()
	// While the flood's answers pile up unread, events between others flow.
	for i := range 100 {
		a.Send(fmt.Sprintf(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E%d"}}`, i))
		b.Expect(fmt.Sprintf(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E%d"},"Error":null}`, i))
	}
	for i := range n {
		flood.C.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := flood.R.ReadString('\n'); err != nil || line != `{"Success":true,"Data":null,"Error":null}`+"\n" {
			t.Fatalf("answer %d: %q, %v", i, line, err)
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("#m.s%d;%s", n-1, strings.Repeat("x", 200))
	for _, m := range srv.MachineInfos() {
		if m.MachineID == "flood" && m.State != want {
			t.Fatalf("state after the flood: %q", m.State)
		}
	}
}
