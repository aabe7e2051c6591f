package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		line    string
		typ     MessageType
		payload string
		id      string
		err     string
	}{
		{line: `{"Type":0,"Payload":{"MachineId":"a"}}`, typ: Register, payload: `{"MachineId":"a"}`},
		{line: `{"Type":"Register","Payload":{}}`, typ: Register, payload: `{}`},
		{line: `{"Type":"Subscribe","Payload":"a","Id":7}`, typ: Subscribe, payload: `"a"`, id: `7`},
		{line: ` { "Id" : "x1" , "Type" : 2 , "Payload" : null } `, typ: SendEvent, id: `"x1"`},
		{line: `{"Type":3}`, typ: Subscribe},
		{line: `{"Type":9,"Payload":1}`, err: "Unknown message type: 9"},
		{line: `{"Type":"Bogus","Id":3}`, err: "Unknown message type: Bogus", id: `3`},
		{line: `{"Type":1.5}`, err: "Unknown message type: 1.5"},
		{line: `{"Payload":1}`, err: "Type is required"},
		{line: `{"type":0}`, err: "Type is required"}, // names are case-exact
		{line: `not json`, err: "Invalid JSON format"},
		{line: `{"Type":0,}`, err: "Invalid JSON format"},
		{line: `{"Type":0} x`, err: "Invalid JSON format"},
		{line: `[1,2]`, err: "Message must be a JSON object"},
		{line: "{\"Type\":\"\xff\"}", err: "Invalid UTF-8 in message"},
		{line: `{"Type":0,"Payload":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`, err: "JSON nested deeper than 64 levels"},
		{line: `{"\u0054ype":1,"Payload":"a"}`, typ: Unregister, payload: `"a"`},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			var r Request
			err := DecodeRequest([]byte(tc.line), &r)
			if tc.err != "" {
				if err == nil || Wire(err).Text != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
			} else {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if r.Type != tc.typ || string(r.Payload) != tc.payload {
					t.Fatalf("got type %v payload %q", r.Type, r.Payload)
				}
			}
			if string(r.ID) != tc.id {
				t.Fatalf("id = %q, want %q", r.ID, tc.id)
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	var ev Event
	raw := `{"SourceMachineId":"a","TargetMachineId":"b\u0031","EventName":"PING","Payload":{"Message":"Hello"},"Timestamp":"2025-10-03T17:16:09.8"}`
	if err := DecodeEvent([]byte(raw), &ev); err != nil {
		t.Fatal(err)
	}
	if string(ev.Source) != "a" || string(ev.Target) != "b1" || string(ev.Name) != "PING" ||
		string(ev.Payload) != `{"Message":"Hello"}` || string(ev.Timestamp) != `"2025-10-03T17:16:09.8"` {
		t.Fatalf("decoded %+v", ev)
	}
	for raw, want := range map[string]string{
		`{"TargetMachineId":"b","EventName":"E"}`:                      "SourceMachineId is required",
		`{"SourceMachineId":"a","EventName":"E"}`:                      "TargetMachineId is required",
		`{"SourceMachineId":"a","TargetMachineId":"b"}`:                "EventName is required",
		`{"SourceMachineId":"a","TargetMachineId":"b","EventName":""}`: "EventName is required",
		`{"SourceMachineId":"a","TargetMachineId":5,"EventName":"E"}`:  "TargetMachineId is required",
		`"text"`: "Payload (an event object) is required",
	} {
		err := DecodeEvent([]byte(raw), &ev)
		if err == nil || Wire(err).Text != want {
			t.Errorf("%s: err = %v, want %q", raw, err, want)
		}
	}
	if err := DecodeEvent(nil, &ev); !errors.Is(err, ErrPayloadNull) {
		t.Errorf("nil payload: %v", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	at := time.Date(2025, 10, 3, 17, 16, 9, 812345678, time.UTC)
	line := AppendSendEvent(nil, "a\"b", "tgt", "PING\n", []byte(`{"X":1}`), at, SendOptions{ID: 42, NoAck: true, Priority: "High"})
	if !json.Valid(line) {
		t.Fatalf("invalid JSON: %s", line)
	}
	var r Request
	if err := DecodeRequest(line[:len(line)-1], &r); err != nil {
		t.Fatal(err)
	}
	var ev Event
	if err := DecodeEvent(r.Payload, &ev); err != nil {
		t.Fatal(err)
	}
	if string(ev.Source) != "a\"b" || string(ev.Name) != "PING\n" || string(r.ID) != "42" || !r.NoAck || r.Priority != High {
		t.Fatalf("round trip: %+v %s", ev, r.ID)
	}
	if string(ev.Timestamp) != `"2025-10-03T17:16:09.8123456Z"` {
		t.Fatalf("timestamp %s: want 7 fractional digits", ev.Timestamp)
	}
	ts, err := ParseTime("2025-10-03T17:16:09.8")
	if err != nil || ts.Nanosecond() != 800000000 {
		t.Fatalf("ParseTime: %v %v", ts, err)
	}
}

func TestResponses(t *testing.T) {
	for got, want := range map[string]string{
		string(AppendDelivery(nil, []byte(`{"EventName":"E"}`))): `{"Success":true,"Data":{"EventName":"E"},"Error":null}` + "\n",
		string(AppendAck(nil, []byte("b"), -1, nil)):             `{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}` + "\n",
		string(AppendAck(nil, []byte("*"), 4, []byte("9"))):      `{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"*","Recipients":4},"Error":null,"Id":9}` + "\n",
		string(AppendError(nil, "Payload is null", nil)):         `{"Success":false,"Data":null,"Error":"Payload is null"}` + "\n",
		string(AppendOK(nil, nil, []byte(`"r"`))):                `{"Success":true,"Data":null,"Error":null,"Id":"r"}` + "\n",
	} {
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	var r Response
	if err := DecodeResponse([]byte(`{"Success":false,"Data":null,"Error":"Target machine not connected: x","Id":3}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.Success || r.Error == "" || string(r.ID) != "3" {
		t.Fatalf("decoded %+v", r)
	}
	err := ParseError(r.Error)
	if !errors.Is(err, ErrTargetNotConnected) || err.Error() != "Target machine not connected: x" {
		t.Fatalf("ParseError: %v", err)
	}
}

func TestValidateID(t *testing.T) {
	for id, ok := range map[string]bool{
		"machine-a": true, "": false, "*": false, "a\x01b": false,
		strings.Repeat("x", 256): true, strings.Repeat("x", 257): false, "\xff": false,
	} {
		if err := ValidateID([]byte(id)); (err == nil) != ok {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
}

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2025, 10, 3, 17, 16, 9, 812345678, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	} {
		want := `"` + tm.UTC().Format(TimeLayout) + `"`
		if got := string(AppendTime(nil, tm)); got != want {
			t.Errorf("AppendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

func TestSpecial8(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(b[i])
			}
			if got, want := special8(x), !plain[c]; got != want {
				t.Fatalf("special8 with byte %#x at %d = %v, want %v", c, pos, got, want)
			}
		}
	}
}

func TestParseTimeBytes(t *testing.T) {
	for _, in := range []string{
		"2025-10-03T17:16:09.8123456Z", "2025-10-03T17:16:09.8", "2024-02-29T00:00:00.0000000Z",
		"2025-10-03T17:16:09+02:00", "2025-02-30T00:00:00.0000000Z", "2025-13-03T17:16:09.8123456Z", "junk",
	} {
		want, werr := ParseTime(in)
		got, gerr := ParseTimeBytes([]byte(in))
		if (werr == nil) != (gerr == nil) || !got.Equal(want) {
			t.Errorf("%s: ParseTimeBytes %v %v, ParseTime %v %v", in, got, gerr, want, werr)
		}
	}
}
