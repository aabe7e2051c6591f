package federation

import (
	"bytes"
	"reflect"
	"testing"
)

func TestMsgRoundTrip(t *testing.T) {
	m := Msg{Kind: KindRequest, Flags: FlagNoAck, Priority: 2, Seq: 1 << 40, N: -5,
		From: "n1", Target: "tgt", Source: "src", Text: "why", Payload: []byte(`{"a":1}`)}
	var got Msg
	if err := got.Decode(m.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("got %+v, want %+v", got, m)
	}
	for n := range len(m.Append(nil)) - len(m.Payload) {
		if err := got.Decode(m.Append(nil)[:n]); err == nil {
			t.Fatalf("truncated at %d: no error", n)
		}
	}
}

func FuzzMsgDecode(f *testing.F) {
	f.Add((&Msg{Kind: KindEvent, Target: "a", Payload: []byte("{}")}).Append(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Msg
		if m.Decode(data) != nil {
			return
		}
		var again Msg
		if err := again.Decode(m.Append(nil)); err != nil || !reflect.DeepEqual(again.Payload, m.Payload) && !(len(m.Payload) == 0 && len(again.Payload) == 0) {
			t.Fatalf("re-encoding: %v", err)
		}
		if !bytes.Equal(m.Append(nil)[:headerLen], data[:headerLen]) {
			t.Fatal("header changed")
		}
	})
}
