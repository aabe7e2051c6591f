package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeState: a state DecodeState accepts is one encoding/json reads
// alike, at most MaxStateBytes of valid UTF-8 without control characters,
// and AppendSetState writes it back as one line that decodes to it.
func FuzzDecodeState(f *testing.F) {
	for _, s := range []string{
		`{"MachineId":"a","State":"#a.b;#a.c"}`, `{"MachineId":"a","State":""}`, `{"State":"x"}`,
		`{"MachineId":"a","State":"\u0085"}`, `{"MachineId":"a","State":"\u00e9\ud83d\ude00"}`, `"a"`, `{"MachineId":"a","State":7}`,
		`{"MachineId":"a","State":"` + strings.Repeat("x", MaxStateBytes) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var p StatePayload
		if DecodeState(payload, &p) != nil {
			return
		}
		var v struct{ MachineId, State string }
		if err := json.Unmarshal(payload, &v); err != nil {
			t.Fatalf("accepted what encoding/json refuses (%v): %q", err, payload)
		}
		if len(p.State) > MaxStateBytes || !utf8.ValidString(p.State) || strings.ContainsAny(p.State, "\r\n\x00\u0085\u2028\u2029") {
			t.Fatalf("accepted state %q", p.State)
		}
		line := AppendSetState(nil, 1, string(p.MachineID), p.State)
		if strings.Count(string(line), "\n") != 1 {
			t.Fatalf("line breaks in %q", line)
		}
		var r Request
		if err := DecodeRequest(line[:len(line)-1], &r); err != nil || r.Type != SetState {
			t.Fatalf("%q: %v", line, err)
		}
		var q StatePayload
		if err := DecodeState(r.Payload, &q); err != nil || q.State != p.State || string(q.MachineID) != string(p.MachineID) {
			t.Fatalf("round trip of %q: %q, %v", payload, q.State, err)
		}
	})
}
