package protocol

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

var fuzzSeeds = []string{
	`{"Type":0,"Payload":{"MachineId":"a","ProcessName":"p","ProcessId":1,"RegisteredAt":"2025-10-03T17:16:09.8123456Z"}}`,
	`{"Type":"Subscribe","Payload":"a","Id":1}`,
	`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"PING","Payload":{"Message":"Hello"},"Timestamp":"2025-10-03T17:16:09.8"}}`,
	`{"Type":2,"Payload":{"SourceMachineId":"a\u0000","TargetMachineId":"*","EventName":"E","Payload":[1,2.5e3,-0,true,false,null,"\ud83d"]}}`,
	`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null,"Id":3}`,
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
		if DecodeEvent(r.Payload, &ev) == nil {
			var want struct {
				SourceMachineId, TargetMachineId, EventName *string
			}
			if json.Unmarshal(r.Payload, &want) != nil || want.EventName == nil ||
				string(ev.Name) != *want.EventName && caseExact(r.Payload) {
				t.Fatalf("event %q decoded as %+v", r.Payload, ev)
			}
		}
		var resp Response
		_ = DecodeResponse(data, &resp)
		_ = DecodeRegistration(r.Payload, &Registration{})
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
		switch k {
		case "SourceMachineId", "TargetMachineId", "EventName":
		default:
			if bytes.EqualFold([]byte(k), []byte("EventName")) {
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
