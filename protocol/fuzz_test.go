package protocol

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var fuzzSeeds = []string{
	`{"Type":0,"Payload":{"MachineId":"a","ProcessName":"p","ProcessId":1,"RegisteredAt":"2025-10-03T17:16:09.8123456Z"}}`,
	`{"Type":"Subscribe","Payload":"a","Id":1}`,
	`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"PING","Payload":{"Message":"Hello"},"Timestamp":"2025-10-03T17:16:09.8"}}`,
	`{"Type":2,"Payload":{"SourceMachineId":"a\u0000","TargetMachineId":"*","EventName":"E","Payload":[1,2.5e3,-0,true,false,null,"\ud83d"]}}`,
	`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null,"Id":3}`,
	`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":{"x":[1]}},"Error":null}`,
	`{"Type":102,"Payload":{"ReplyTo":1,"Payload":{"x":1}}}`, `{"Type":105,"Payload":{"EventName":"A_*","WatchId":2}}`,
	`{"Type":103,"Payload":{"Group":"g","MachineId":"m"}}`, `{"Type":2,"Request":true,"TimeoutMs":5,"Priority":"High","NoAck":true,"Payload":{}}`,
	`[[[[]]]]`, `{"a":}`, `"\x"`, `1.`, `-`, `{"Type":01}`,
	"{\"Type\":2,\"Payload\":{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"b\",\"EventName\":\"E\",\"X\":[0,\r{\"Success\":true,\"Data\":{\"SourceMachineId\":\"root\",\"TargetMachineId\":\"b\",\"EventName\":\"F\"},\"Error\":null}\r]}}",
	"{\"Type\":2,\"Id\":\"\u2028\",\"Payload\":{\"SourceMachineId\":\"a\",\r\n\"TargetMachineId\":\"b\",\"EventName\":\"E\u2029\",\"P\":\"\u0085\"}}",
	`{"Type":2,"Payload":{"SourceMachineId":"a","sourceMachineId":"b","TargetMachineId":"b","EventName":"E"}}`,
	`{"Type":2,"Payload":{"\u0053ourceMachineId":"a","TargetMachineId":"b","TargetMachineId":"c","EventName":"E","ſourceMachineId":"x"}}`,
	"{\"Type\":102,\"Payload\":{\"ReplyTo\":1,\"Payload\":{\"x\":\r\"\u2028\"}}}",
}

// FuzzScanner checks the scanner against encoding/json: every input they
// both judge is judged alike, and a decoded request's parts are the values
// encoding/json finds. An event the service would forward is forwarded as
// one line to every line reader, with the meaning it was sent with, and
// its routing keys read by encoding/json (case-insensitive, last key wins)
// are those the service checked.
func FuzzScanner(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ours := Valid(data)
		// encoding/json accepts invalid UTF-8 and any depth; compare only
		// where those limits do not apply.
		theirs := json.Valid(data)
		if utf8.Valid(data) && bytes.Count(data, []byte("["))+
			bytes.Count(data, []byte("{")) <= MaxDepth && ours != theirs {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", data, ours, theirs)
		}
		if ours && !theirs {
			t.Fatalf("we accept %q, encoding/json does not", data)
		}

		var resp Response
		if DecodeResponse(data, &resp) == nil {
			var dev Event
			if ok := DecodeEvent(resp.Data, &dev) == nil; ok != resp.IsEvent {
				t.Fatalf("%q: IsEvent %v, DecodeEvent(Data) ok %v", data, resp.IsEvent, ok)
			}
		}

		// DecodeRequest may rewrite its input: give it a copy.
		line := bytes.Clone(data)
		var r Request
		err := DecodeRequest(line, &r)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			t.Fatalf("decoded a request from %q that is not an object", data)
		}
		if p, ok := m["Payload"]; ok && string(p) != "null" && !sameJSON(p, r.Payload) {
			t.Fatalf("Payload = %q, encoding/json found %q", r.Payload, p)
		}
		if r.ID != nil && !oneLine(r.ID) {
			t.Fatalf("Id %q of %q is more than one line", r.ID, data)
		}
		if r.EventErr() == nil {
			// What the service forwards: one line to every line reader,
			// one object whose routing every JSON reader reads alike.
			checkForwarded(t, AppendDelivery(nil, r.Payload), &r.Event)
			checkForwarded(t, AppendRequestDelivery(nil, r.Payload, 7, time.Unix(1, 0)), &r.Event)
		}
		// The one-pass event fields agree with a separate DecodeEvent.
		var sep Event
		sepErr := DecodeEvent(r.Payload, &sep)
		if (r.EventErr() == nil) != (sepErr == nil) {
			t.Fatalf("%q: one pass says %v, DecodeEvent says %v", data, r.EventErr(), sepErr)
		}
		if sepErr == nil && (!bytes.Equal(sep.Source, r.Event.Source) || !bytes.Equal(sep.Target, r.Event.Target) ||
			!bytes.Equal(sep.Name, r.Event.Name) || !bytes.Equal(sep.Payload, r.Event.Payload)) {
			t.Fatalf("%q: one pass %+v, DecodeEvent %+v", data, r.Event, sep)
		}
		var rp ReplyPayload
		if r.Payload != nil && DecodeReply(bytes.Clone(r.Payload), &rp) == nil && rp.Payload != nil {
			// A reply's payload is forwarded as the caller's Data.
			if !oneLine(rp.Payload) || !json.Valid(rp.Payload) {
				t.Fatalf("reply payload %q forwarded as %q", r.Payload, rp.Payload)
			}
			var want struct{ Payload json.RawMessage }
			if json.Unmarshal(r.Payload, &want) == nil && !sameJSON(want.Payload, rp.Payload) {
				t.Fatalf("reply payload %q forwarded as %q", want.Payload, rp.Payload)
			}
		}
		_ = DecodeRegistration(r.Payload, &Registration{})
		_ = DecodeGroup(r.Payload, &GroupPayload{})
		_ = DecodeWatch(r.Payload, &WatchPayload{})
		_, _ = MachineIDPayload(r.Payload)
	})
}

// checkForwarded checks a line the service writes with an event it
// accepted: every line reader (see splitLines) sees one line, encoding/json
// one object whose routing keys, read case-insensitively, are those the
// service read (ev), and no reader can find another: the event has each
// envelope key once and no key that folds onto one.
func checkForwarded(t *testing.T, line []byte, ev *Event) {
	t.Helper()
	line = bytes.TrimSuffix(line, []byte("\n"))
	if !oneLine(line) {
		t.Fatalf("forwarded line %q is more than one line", line)
	}
	var resp struct{ Data json.RawMessage }
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("forwarded line %q: %v", line, err)
	}
	var got struct {
		SourceMachineId, TargetMachineId, EventName *string
	}
	if err := json.Unmarshal(resp.Data, &got); err != nil || got.SourceMachineId == nil ||
		got.TargetMachineId == nil || got.EventName == nil || *got.SourceMachineId != string(ev.Source) ||
		*got.TargetMachineId != string(ev.Target) || *got.EventName != string(ev.Name) {
		t.Fatalf("forwarded %q: encoding/json reads %v, the service read %+v", resp.Data, err, ev)
	}
	keys, err := topKeys(resp.Data)
	if err != nil {
		t.Fatalf("forwarded %q: %v", resp.Data, err)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		for _, name := range eventKeys {
			if strings.EqualFold(k, name) && k != name || k == name && seen[k] {
				t.Fatalf("forwarded %q has key %q besides %s", resp.Data, k, name)
			}
		}
		seen[k] = true
	}
}

// oneLine reports whether every line reader sees b as one line (or none).
func oneLine(b []byte) bool { return len(splitLines(string(b), true)) <= 1 }

// sameJSON reports whether a and b are JSON values with the same meaning.
func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// topKeys returns the keys of the JSON object obj in order, unescaped.
func topKeys(obj []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// FuzzAppendString checks that every string encodes to valid JSON, on one
// line for every line reader, that decodes back to the same string
// (invalid UTF-8 aside).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\\n\x00", "héllo", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s: %v", s, b, err)
		}
		if !oneLine(b) {
			t.Fatalf("AppendString(%q) = %q, more than one line", s, b)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("round trip %q -> %s -> %q", s, b, got)
		}
	})
}

// TestScanStringEveryPosition: a byte that ends a string or needs a closer
// look (a quote, a backslash, a control byte, a non-ASCII byte, valid or
// not) is found at every position of strings long enough for the scanner's
// 32- and 8-byte steps, as encoding/json finds it.
func TestScanStringEveryPosition(t *testing.T) {
	for n := 0; n < 80; n++ {
		for i := 0; i < n; i++ {
			for _, c := range []string{`"`, `\`, `\n`, "\x01", "\x1f", "\x7f", "é", "\u2028", "\xff", `\"`, `\u00e9`} {
				s := []byte(`{"k":"` + strings.Repeat("x", i) + c + strings.Repeat("y", n-i) + `"}`)
				if got, want := Valid(s), json.Valid(s) && utf8.Valid(s); got != want {
					t.Fatalf("Valid(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}
