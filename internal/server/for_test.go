package server_test

import (
	"regexp"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// A connection that holds several ids is told which one each delivery is
// for ("For"): broadcasts, group sends and requests carry "*", "@group"
// or the caller's target, which do not say. One that holds one id gets
// the lines it always got, byte for byte (the .NET client's case).
func TestWireDeliveryFor(t *testing.T) {
	srv := bustest.Start(t, nil)
	single := dialRaw(t, srv).Connect("solo")
	m := dialRaw(t, srv).Connect("a")
	m.Send(`{"Type":0,"Payload":{"MachineId":"b"}}`)
	m.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"b","RegisteredAt":` + ts + `\},"Error":null\}`)
	m.Send(`{"Type":3,"Payload":"b"}`)
	m.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"b","SubscribedAt":` + ts + `\},"Error":null\}`)
	m.Send(`{"Type":103,"Payload":{"Group":"g","MachineId":"b"}}`)
	m.Expect(`{"Success":true,"Data":null,"Error":null}`)

	// Unicast to each id.
	for _, id := range []string{"a", "b"} {
		ev := `{"SourceMachineId":"solo","TargetMachineId":"` + id + `","EventName":"E"}`
		single.Send(`{"Type":2,"Payload":` + ev + `}`)
		m.Expect(`{"Success":true,"Data":` + ev + `,"Error":null,"For":"` + id + `"}`)
		single.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"` + id + `"},"Error":null}`)
	}
	// A group send: the member is named.
	ev := `{"SourceMachineId":"solo","TargetMachineId":"@g","EventName":"G"}`
	single.Send(`{"Type":2,"Payload":` + ev + `}`)
	m.Expect(`{"Success":true,"Data":` + ev + `,"Error":null,"For":"b"}`)
	single.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
	// A broadcast: one copy per id, each named.
	ev = `{"SourceMachineId":"solo","TargetMachineId":"*","EventName":"ALL"}`
	single.Send(`{"Type":2,"Payload":` + ev + `}`)
	got := map[string]bool{}
	for range 2 {
		line := m.ExpectMatch(`\{"Success":true,"Data":` + regexp.QuoteMeta(ev) + `,"Error":null,"For":"(a|b)"\}`)
		got[line[len(line)-3:len(line)-2]] = true
	}
	if !got["a"] || !got["b"] {
		t.Fatalf("broadcast copies for %v, want a and b", got)
	}
	single.ExpectMatch(`\{"Success":true,"Data":\{"Delivered":true,"TargetMachineId":"\*","Recipients":2\},"Error":null\}`)
	// A request: the token and the id.
	ev = `{"SourceMachineId":"solo","TargetMachineId":"@g","EventName":"Q"}`
	single.Send(`{"Type":2,"Request":true,"Payload":` + ev + `}`)
	m.ExpectMatch(`\{"Success":true,"Data":` + regexp.QuoteMeta(ev) + `,"Error":null,"ReplyTo":\d+,"For":"b"\}`)
	// A refused event names the id that sent it: a post has no Id.
	m.Send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"b","TargetMachineId":"nobody","EventName":"E"}}`)
	m.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: nobody","For":"b"}`)
	single.Send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"solo","TargetMachineId":"nobody","EventName":"E"}}`)
	single.Expect(`{"Success":false,"Data":null,"Error":"Target machine not connected: nobody"}`)
	// The single-id connection sees the broadcast of a multi-id one as
	// always: no "For".
	ev = `{"SourceMachineId":"a","TargetMachineId":"*","EventName":"ALL"}`
	m.Send(`{"Type":2,"Payload":` + ev + `}`)
	single.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
}
