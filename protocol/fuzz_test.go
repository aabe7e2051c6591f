package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
}

// FuzzScanner checks the scanner against encoding/json: every input they
// both judge is judged alike, and a decoded request's parts are the values
// encoding/json finds.
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

		var r Request
		err := DecodeRequest(data, &r)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			t.Fatalf("decoded a request from %q that is not an object", data)
		}
		if p, ok := m["Payload"]; ok && string(p) != "null" && !bytes.Equal(p, r.Payload) {
			t.Fatalf("Payload = %q, encoding/json found %q", r.Payload, p)
		}
		var ev Event
		if DecodeEvent(r.Payload, &ev) == nil && caseExact(r.Payload) {
			var want struct {
				SourceMachineId, TargetMachineId, EventName *string
			}
			if json.Unmarshal(r.Payload, &want) != nil || want.EventName == nil ||
				string(ev.Name) != *want.EventName {
				t.Fatalf("event %q decoded as %+v", r.Payload, ev)
			}
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
		_ = DecodeRegistration(r.Payload, &Registration{})
		_ = DecodeReply(r.Payload, &ReplyPayload{})
		_ = DecodeGroup(r.Payload, &GroupPayload{})
		_ = DecodeWatch(r.Payload, &WatchPayload{})
		_, _ = MachineIDPayload(r.Payload)
	})
}

// caseExact reports whether obj's keys are free of case variants that
// encoding/json (case-insensitive) would match but we (case-exact) do not.
func caseExact(obj []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return false
	}
	for k := range m {
		for _, name := range []string{"SourceMachineId", "TargetMachineId", "EventName"} {
			if k != name && strings.EqualFold(k, name) {
				return false
			}
		}
	}
	return true
}

// FuzzAppendString checks that every string encodes to valid JSON that
// decodes back to the same string (invalid UTF-8 aside).
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
		if utf8.ValidString(s) && got != s {
			t.Fatalf("round trip %q -> %s -> %q", s, b, got)
		}
	})
}
