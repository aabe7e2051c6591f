package protocol

import (
	"testing"
	"time"
)

// FuzzDecodeDurable: no payload panics the durable requests' decoders;
// what they accept has the limits they promise, and the lines the client
// writes decode to what was written.
func FuzzDecodeDurable(f *testing.F) {
	f.Add([]byte(`{"MachineId":"ctl","Sequence":17}`))
	f.Add([]byte(`{"MachineId":"ctl","Sequence":17,"Refuse":"bad"}`))
	f.Add([]byte(`{"MachineId":"ctl","Sequence":1,"Rewind":true}`))
	f.Add([]byte(`{"MachineId":"ctl","FromSequence":3,"Since":"2026-01-02T15:04:05Z","Limit":10}`))
	f.Add([]byte(`{"MachineId":"ctl","Redrive":true,"Sequence":2}`))
	f.Add([]byte(`{"MachineId":"\u202e","Sequence":-1}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var a AckPayload
		if DecodeAck(payload, &a) == nil {
			if len(a.MachineID) == 0 || len(a.Refuse) > MaxRefuseBytes {
				t.Fatalf("accepted %+v", a)
			}
		}
		var r ReplayPayload
		if DecodeReplay(payload, &r) == nil && ValidateID(r.MachineID) != nil {
			t.Fatalf("accepted an invalid id %q", r.MachineID)
		}
		var d DeadLettersPayload
		if DecodeDeadLetters(payload, &d) == nil && d.Redrive && len(d.MachineID) == 0 {
			t.Fatal("accepted a re-drive without a MachineId")
		}
	})
}

func TestDurableLines(t *testing.T) {
	var req Request
	line := AppendAckRequest(nil, "ctl\u2028", 17, "bad \"x\"")
	if err := DecodeRequest(line[:len(line)-1], &req); err != nil || req.Type != Ack {
		t.Fatalf("%s: %v", line, err)
	}
	var a AckPayload
	if err := DecodeAck(req.Payload, &a); err != nil || string(a.MachineID) != "ctl\u2028" || a.Sequence != 17 || a.Refuse != `bad "x"` {
		t.Fatalf("%+v %v", a, err)
	}
	line = AppendRewindRequest(nil, "ctl", 3)
	if err := DecodeRequest(line[:len(line)-1], &req); err != nil || DecodeAck(req.Payload, &a) != nil || !a.Rewind || a.Sequence != 3 {
		t.Fatalf("%s: %+v", line, a)
	}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	line = AppendReplay(nil, 5, "ctl", 9, since, 10)
	var r ReplayPayload
	if err := DecodeRequest(line[:len(line)-1], &req); err != nil || DecodeReplay(req.Payload, &r) != nil ||
		r.FromSequence != 9 || !r.Since.Equal(since) || r.Limit != 10 {
		t.Fatalf("%s: %+v", line, r)
	}
	line = AppendRegisterDurable(nil, 1, "ctl", "p", 1, since)
	var reg Registration
	if err := DecodeRequest(line[:len(line)-1], &req); err != nil || DecodeRegistration(req.Payload, &reg) != nil || !reg.Durable {
		t.Fatalf("%s: %+v", line, reg)
	}
}
