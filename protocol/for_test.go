package protocol

import (
	"testing"
	"time"
)

func TestAppendForRoundTrip(t *testing.T) {
	ev := []byte(`{"SourceMachineId":"s","TargetMachineId":"*","EventName":"E"}`)
	for _, line := range [][]byte{
		AppendFor(AppendDelivery(nil, ev), `b"\`),
		AppendFor(AppendRequestDelivery([]byte("prefix"), ev, 7, time.Time{}), `b"\`)[len("prefix"):],
	} {
		var r Response
		if err := DecodeResponse(line, &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if string(r.For) != `"b\"\\"` || !r.IsEvent || string(r.Event.Target) != "*" {
			t.Fatalf("%s: For %s, event %+v", line, r.For, r.Event)
		}
	}
	var r Response
	if DecodeResponse(AppendDelivery(nil, ev), &r); r.For != nil {
		t.Fatalf("For %q without one", r.For)
	}
}
