package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// body returns a frame's body after checking its header.
func body(t testing.TB, frame []byte, typ byte) []byte {
	t.Helper()
	if len(frame) < FrameHeader || frame[0] != typ {
		t.Fatalf("frame %q: want type %d", frame, typ)
	}
	if n := binary.LittleEndian.Uint32(frame[1:]); int(n) != len(frame)-FrameHeader {
		t.Fatalf("frame %q: length %d, body %d bytes", frame, n, len(frame)-FrameHeader)
	}
	return frame[FrameHeader:]
}

func TestSendFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		o       SendOptions
	}{
		{"plain", []byte(`{"a":1}`), SendOptions{ID: 7}},
		{"post", nil, SendOptions{NoAck: true, Priority: "High"}},
		{"request", []byte(`[1,2]`), SendOptions{ID: 1 << 40, Request: true, TimeoutMs: 1500, Priority: "Low"}},
		{"traced", []byte(`"x"`), SendOptions{ID: 3, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "k=v"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := AppendSendFrame(nil, "src", "tgt", "EV", tc.payload, tc.o)
			var r Request
			if err := DecodeSendFrame(body(t, f, FrameSend), &r); err != nil {
				t.Fatal(err)
			}
			ev := r.Event
			if string(ev.Source) != "src" || string(ev.Target) != "tgt" || string(ev.Name) != "EV" || !bytes.Equal(ev.Payload, tc.payload) {
				t.Fatalf("decoded %+v", ev)
			}
			if r.NumID != tc.o.ID || r.NoAck != tc.o.NoAck || r.IsRequest != tc.o.Request || r.TimeoutMs != tc.o.TimeoutMs ||
				string(ev.TraceParent) != tc.o.TraceParent || string(ev.TraceState) != tc.o.TraceState || !r.Framed || r.Type != SendEvent {
				t.Fatalf("decoded %+v, sent %+v", r, tc.o)
			}
			if want := map[string]Priority{"": Normal, "High": High, "Low": Low}[tc.o.Priority]; r.Priority != want {
				t.Fatalf("priority %v, want %v", r.Priority, want)
			}
			if r.EventErr() != nil {
				t.Fatal(r.EventErr())
			}
			// What a JSON reader gets is the event a line would carry.
			obj := AppendEventObject(nil, &r.Event, time.Date(2026, 11, 27, 1, 2, 3, 400, time.UTC))
			var back Event
			if err := DecodeEvent(obj, &back); err != nil {
				t.Fatalf("%s: %v", obj, err)
			}
			if string(back.Source) != "src" || string(back.Name) != "EV" || string(back.Timestamp) != `"2026-11-27T01:02:03.0000004Z"` {
				t.Fatalf("event object %s", obj)
			}
		})
	}
}

func TestSendFrameRefusals(t *testing.T) {
	good := AppendSendFrame(nil, "a", "b", "E", []byte(`{"x":1}`), SendOptions{ID: 9})
	for _, tc := range []struct {
		name  string
		body  []byte
		want  string
		hasID bool
	}{
		{"empty", nil, "Malformed frame: it ends before its flags", false},
		{"no id", []byte{0, 1}, "Malformed frame: its Id is not a valid uvarint", false},
		{"cut source", []byte{0, 1, 9, 5, 'a'}, "Malformed frame: its source is longer than the frame (5 bytes)", true},
		{"flags", append([]byte{0x80}, body(t, good, FrameSend)[1:]...), "Malformed frame: unknown flags 128", true},
		{"priority", append([]byte{0, 7}, body(t, good, FrameSend)[2:]...), `Priority must be "High", "Normal" or "Low"`, true},
		{"bad json", append(body(t, good, FrameSend)[:11:11], `{"x":`...), "Invalid JSON format", true},
		{"two values", append(body(t, good, FrameSend)[:11:11], `1 2`...), "Invalid JSON format", true},
		{"no name", body(t, AppendSendFrame(nil, "a", "b", "", nil, SendOptions{ID: 9}), FrameSend), "EventName is required", true},
		{"not utf-8", body(t, AppendSendFrame(nil, "a", "b", "E\xff", nil, SendOptions{ID: 9}), FrameSend), "Malformed frame: the event name, target or a trace field is not valid UTF-8", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			err := DecodeSendFrame(tc.body, &r)
			if err == nil || Wire(err).Text != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.hasID && r.NumID != 9 {
				t.Fatalf("Id %d, want 9 (known before the fault)", r.NumID)
			}
		})
	}
}

// A payload with raw line breaks becomes one line for every reader, as a
// line's does.
func TestCheckPayloadLineBreaks(t *testing.T) {
	var buf []byte
	p, err := CheckPayload([]byte("{\"a\":\r\n1,\"s\":\"x\u2028y\u0085\"}"), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":  1,"s":"x\u2028y\u0085"}`; string(p) != want {
		t.Fatalf("got %s, want %s", p, want)
	}
	if p, err := CheckPayload([]byte("null"), &buf); p != nil || err != nil {
		t.Fatalf("null: %q %v", p, err)
	}
	nest := func(n int) []byte { return []byte(strings.Repeat("[", n) + strings.Repeat("]", n)) }
	if _, err := CheckPayload(nest(MaxDepth-2), &buf); err != nil {
		t.Fatalf("%d levels: %v", MaxDepth-2, err)
	}
	if _, err := CheckPayload(nest(MaxDepth-1), &buf); err != errPayloadTooDeep {
		t.Fatalf("a payload that would nest deeper than MaxDepth in a line: %v", err)
	}
}

func TestServerFramesRoundTrip(t *testing.T) {
	ev := Event{Source: []byte("a"), Target: []byte("b"), Name: []byte("E"), Payload: []byte(`{"k":[1]}`),
		TraceParent: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}
	f := AppendEventFrame(nil, &ev, &EventFrame{Timestamp: 42, ReplyTo: 5, Deadline: 99, For: "b"})
	var r Response
	if err := DecodeFrame(FrameEvent, body(t, f, FrameEvent), &r); err != nil {
		t.Fatal(err)
	}
	if !r.IsEvent || r.Time != 42 || r.ReplyTo != 5 || r.DeadlineNs != 99 || string(r.ForID) != "b" ||
		string(r.Event.Payload) != `{"k":[1]}` || string(r.Event.TraceParent) != string(ev.TraceParent) || len(r.Event.TraceState) != 0 {
		t.Fatalf("event frame decoded as %+v", r)
	}
	f = AppendAckFrame(nil, 12, "*", 3)
	if err := DecodeFrame(FrameAck, body(t, f, FrameAck), &r); err != nil || r.NumID != 12 || r.Recipients != 3 || string(r.AckTarget) != "*" || !r.Success {
		t.Fatalf("ack %+v %v", r, err)
	}
	f = AppendAckFrame(nil, 13, "b", -1)
	if err := DecodeFrame(FrameAck, body(t, f, FrameAck), &r); err != nil || r.Recipients != -1 {
		t.Fatalf("ack %+v %v", r, err)
	}
	if got := AppendAckData(nil, r.AckTarget, r.Recipients); string(got) != `{"Delivered":true,"TargetMachineId":"b"}` {
		t.Fatalf("ack data %s", got)
	}
	f = AppendErrorFrame(nil, 14, "Target machine not connected: x", "b")
	if err := DecodeFrame(FrameError, body(t, f, FrameError), &r); err != nil || r.NumID != 14 || r.Success || r.Error != "Target machine not connected: x" || string(r.ForID) != "b" {
		t.Fatalf("error %+v %v", r, err)
	}
	f = AppendResultFrame(nil, 15, []byte(`{"ok":true}`))
	if err := DecodeFrame(FrameResult, body(t, f, FrameResult), &r); err != nil || r.NumID != 15 || !r.Success || string(r.Data) != `{"ok":true}` {
		t.Fatalf("result %+v %v", r, err)
	}
	if err := DecodeFrame(FrameSend, nil, &r); err == nil {
		t.Fatal("a client's frame type decoded as the service's")
	}
}

func TestReplyFrame(t *testing.T) {
	var rp ReplyPayload
	var buf []byte
	if err := DecodeReplyFrame(body(t, AppendReplyFrame(nil, 77, []byte(`[3]`), ""), FrameReply), &rp, &buf); err != nil || rp.ReplyTo != 77 || string(rp.Payload) != "[3]" {
		t.Fatalf("reply %+v %v", rp, err)
	}
	if err := DecodeReplyFrame(body(t, AppendReplyFrame(nil, 78, nil, "nope"), FrameReply), &rp, &buf); err != nil || rp.ReplyTo != 78 || rp.Error != "nope" {
		t.Fatalf("error reply %+v %v", rp, err)
	}
	if err := DecodeReplyFrame(append([]byte{0, 1}, `{`...), &rp, &buf); err == nil {
		t.Fatal("a reply that is not JSON was taken")
	}
}

func TestAskFraming(t *testing.T) {
	line := AskFraming(AppendRegister(nil, 1, "m", "p", 1, time.Unix(0, 0)))
	var r Request
	if err := DecodeRequest(bytes.TrimSuffix(line, []byte("\n")), &r); err != nil {
		t.Fatal(err)
	}
	var reg Registration
	if err := DecodeRegistration(r.Payload, &reg); err != nil || reg.Framing != Framing {
		t.Fatalf("%s: %+v %v", line, reg, err)
	}
	if got := AppendFraming([]byte(`{"MachineId":"m"}`), Framing); !json.Valid(got) || string(Field(got, "Framing")) != `"compact/1"` {
		t.Fatalf("%s", got)
	}
}

// FuzzDecodeSendFrame: whatever a client frames, what the service would
// forward to a JSON reader is one line, valid JSON, and carries the names
// and payload the service checked.
func FuzzDecodeSendFrame(f *testing.F) {
	f.Add(body(f, AppendSendFrame(nil, "a", "b", "E", []byte(`{"x":"\u2028"}`), SendOptions{ID: 1, Request: true, TimeoutMs: 5}), FrameSend))
	f.Add(body(f, AppendSendFrame(nil, "a\"", "\\b", "E\n", []byte("[1,\n2]"), SendOptions{TraceParent: "t", TraceState: "s"}), FrameSend))
	f.Add([]byte{0, 1, 0, 1, 'a', 1, 'b', 1, 'E', '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if DecodeSendFrame(b, &r) != nil || !utf8.Valid(r.Event.Source) {
			return // the service forwards only a source the connection holds: a valid id
		}
		obj := AppendEventObject(nil, &r.Event, time.Unix(1, 0))
		if bytes.ContainsAny(obj, "\r\n") || hasSep(obj) {
			t.Fatalf("event object %q is not one line", obj)
		}
		var ev Event
		if err := DecodeEvent(obj, &ev); err != nil {
			t.Fatalf("event object %q: %v", obj, err)
		}
		var std struct{ SourceMachineId, TargetMachineId, EventName string }
		if err := json.Unmarshal(obj, &std); err != nil || std.SourceMachineId != string(r.Event.Source) ||
			std.TargetMachineId != string(r.Event.Target) || std.EventName != string(r.Event.Name) {
			t.Fatalf("event object %q reads as %+v (%v), the service checked %+v", obj, std, err, r.Event)
		}
	})
}

// FuzzDecodeFrame: the client's decoder of the service's frames never
// panics and never reads past a frame.
func FuzzDecodeFrame(f *testing.F) {
	ev := Event{Source: []byte("a"), Target: []byte("b"), Name: []byte("E"), Payload: []byte(`1`)}
	f.Add(FrameEvent, body(f, AppendEventFrame(nil, &ev, &EventFrame{Timestamp: 1, ReplyTo: 2, For: "x"}), FrameEvent))
	f.Add(FrameAck, body(f, AppendAckFrame(nil, 1, "b", 2), FrameAck))
	f.Add(FrameError, body(f, AppendErrorFrame(nil, 1, "e", "f"), FrameError))
	f.Add(FrameResult, body(f, AppendResultFrame(nil, 1, []byte(`2`)), FrameResult))
	f.Fuzz(func(t *testing.T, typ byte, b []byte) {
		var r Response
		b = b[:len(b):len(b)]
		if DecodeFrame(typ, b, &r) != nil {
			return
		}
		for _, s := range [][]byte{r.Event.Source, r.Event.Target, r.Event.Name, r.Event.Payload, r.ForID, r.AckTarget, r.Data} {
			if len(s) > len(b) {
				t.Fatalf("a field of %d bytes from a %d-byte frame", len(s), len(b))
			}
		}
	})
}
