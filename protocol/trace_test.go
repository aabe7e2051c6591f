package protocol

import (
	"strings"
	"testing"
	"time"
)

// TestTraceContext: a send with a trace context carries it in the event
// object as "traceparent" and "tracestate", and the decoder reads them
// back; without one the line has neither; a non-string or escaped value is
// not taken.
func TestTraceContext(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	line := AppendSendEvent(nil, "a", "b", "E", []byte(`{"x":1}`), at, SendOptions{TraceParent: tp, TraceState: "k=v"})
	want := `{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":{"x":1},"Timestamp":"2026-11-27T12:00:00.0000000Z","traceparent":"` + tp + `","tracestate":"k=v"}}` + "\n"
	if string(line) != want {
		t.Fatalf("got  %s\nwant %s", line, want)
	}
	var r Request
	if err := DecodeRequest(line[:len(line)-1], &r); err != nil || r.EventErr() != nil {
		t.Fatal(err, r.EventErr())
	}
	if string(r.Event.TraceParent) != tp || string(r.Event.TraceState) != "k=v" || string(r.Event.Name) != "E" {
		t.Fatalf("decoded %q %q", r.Event.TraceParent, r.Event.TraceState)
	}
	plain := AppendSendEvent(nil, "a", "b", "E", nil, at, SendOptions{})
	if strings.Contains(string(plain), "trace") {
		t.Fatalf("a send without a trace context: %s", plain)
	}
	for _, ev := range []string{
		`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","traceparent":1}`,
		`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","traceparent":"00-\u0030"}`,
		`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","trace\u0070arent":"00-x"}`,
		`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","TraceParent":"00-x"}`,
	} {
		var e Event
		if err := DecodeEvent([]byte(ev), &e); err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		if e.TraceParent != nil {
			t.Errorf("%s: took traceparent %q", ev, e.TraceParent)
		}
	}
}
