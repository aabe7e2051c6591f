package statebus_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// netTS matches a timestamp as .NET writes it.
const netTS = `"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"`

// TestCompactAndJSONPeers: a Go client on the compact framing and a
// .NET-shaped JSON client exchange events, requests and broadcasts; the
// JSON client reads canonical lines, the Go client the JSON client's
// events with their fields and timestamp.
func TestCompactAndJSONPeers(t *testing.T) {
	srv := bustest.Start(t, nil)
	got := make(chan statebus.Event, 4)
	g := dial(t, srv, "go", statebus.WithHandler("*", func(e statebus.Event) { got <- e }))
	g.HandleRequest("ASK", func(_ context.Context, e statebus.Event) (any, error) {
		return map[string]any{"you": e.Source}, nil
	})
	n := bustest.DialRaw(t, srv.Addr()).Connect("net")
	dial(t, srv, "other", statebus.WithHandler("*", func(e statebus.Event) { got <- e }))

	// Go -> .NET: an event, acknowledged.
	done := make(chan error, 1)
	go func() {
		done <- g.SendEvent(context.Background(), "net", "PING", map[string]string{"Message": "hi\u2028"})
	}()
	n.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"go","TargetMachineId":"net","EventName":"PING","Payload":\{"Message":"hi\\u2028"\},"Timestamp":` + netTS + `\},"Error":null\}`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// .NET -> Go.
	n.Send(`{"Type":2,"Payload":{"SourceMachineId":"net","TargetMachineId":"go","EventName":"PONG","Payload":{"n":1},"Timestamp":"2025-10-03T17:16:09.8123456Z"}}`)
	n.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"go"},"Error":null}`)
	e := recv(t, got)
	if e.Source != "net" || e.Name != "PONG" || string(e.Payload) != `{"n":1}` || !e.Timestamp.Equal(time.Date(2025, 10, 3, 17, 16, 9, 812345600, time.UTC)) {
		t.Fatalf("event %+v", e)
	}
	// Broadcasts both ways: the other Go client and .NET get go's; go and
	// other get .NET's.
	go func() { done <- g.SendEvent(context.Background(), "*", "ALL", 1) }()
	n.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"go","TargetMachineId":"\*","EventName":"ALL","Payload":1,"Timestamp":` + netTS + `\},"Error":null\}`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e := recv(t, got); e.Source != "go" || e.Name != "ALL" {
		t.Fatalf("other got %+v", e)
	}
	n.Send(`{"Type":2,"Id":4,"Payload":{"SourceMachineId":"net","TargetMachineId":"*","EventName":"ALL2"}}`)
	n.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"*","Recipients":2},"Error":null,"Id":4}`)
	for range 2 {
		if e := recv(t, got); e.Source != "net" || e.Name != "ALL2" {
			t.Fatalf("got %+v", e)
		}
	}
	// Request .NET -> Go, answered by go's handler.
	n.Send(`{"Type":2,"Id":"q","Request":true,"TimeoutMs":5000,"Payload":{"SourceMachineId":"net","TargetMachineId":"go","EventName":"ASK"}}`)
	n.Expect(`{"Success":true,"Data":{"you":"net"},"Error":null,"Id":"q"}`)
	// Request Go -> .NET, answered by a JSON Reply.
	type result struct {
		e   statebus.Event
		err error
	}
	res := make(chan result, 1)
	go func() {
		e, err := g.Request(context.Background(), "net", "ASK2", nil)
		res <- result{e, err}
	}()
	line := n.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"go","TargetMachineId":"net","EventName":"ASK2","Payload":null,"Timestamp":` + netTS + `\},"Error":null,"ReplyTo":\d+\}`)
	n.Send(`{"Type":102,"Payload":{"ReplyTo":` + string(protocol.Field([]byte(line), "ReplyTo")) + `,"Payload":[42]}}`)
	if r := <-res; r.err != nil || string(r.e.Payload) != "[42]" {
		t.Fatalf("reply %s %v", r.e.Payload, r.err)
	}
}

func recv(t *testing.T, ch <-chan statebus.Event) statebus.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return statebus.Event{}
	}
}

// TestFramingFallback: against a service that does not offer the compact
// framing the client speaks JSON lines, and everything works as before.
func TestFramingFallback(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.NoCompactFraming = true })
	got := make(chan statebus.Event, 1)
	dial(t, srv, "b", statebus.WithHandler("E", func(e statebus.Event) { got <- e }))
	a := dial(t, srv, "a")
	if a.Framing() != statebus.FramingJSON {
		t.Fatal("the client says it speaks the compact framing to a service that does not offer it")
	}
	if err := a.SendEvent(context.Background(), "b", "E", json.RawMessage(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, got); string(e.Payload) != `{"x":1}` || e.Timestamp.IsZero() {
		t.Fatalf("%+v", e)
	}
	// A json.RawMessage that is not JSON is refused by the client, which
	// would otherwise write a line the service cannot read.
	if err := a.SendEvent(context.Background(), "b", "E", json.RawMessage(`{`)); err == nil {
		t.Fatal("invalid raw payload sent")
	}
	// On the compact framing the service refuses it, with the same kind.
	srv2 := bustest.Start(t, nil)
	dial(t, srv2, "b")
	c := dial(t, srv2, "a", statebus.WithFraming(statebus.FramingCompact))
	if c.Framing() != statebus.FramingCompact {
		t.Fatal("the compact framing was not negotiated")
	}
	if j := dial(t, srv2, "j", statebus.WithFraming(statebus.FramingJSON)); j.Framing() != statebus.FramingJSON {
		t.Fatal("a client that asked for JSON says it speaks the compact framing")
	}
	if err := c.SendEvent(context.Background(), "b", "E", json.RawMessage(`{`)); !errors.Is(err, protocol.ErrInvalidJSON) {
		t.Fatalf("invalid raw payload on a compact connection: %v", err)
	}
}
