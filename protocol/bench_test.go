package protocol

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchEvent is a SendEvent line as the Go client writes it, with a
// 128-byte payload.
var benchEvent = AppendSendEvent(nil, "sender", "receiver", "E",
	[]byte(`{"Message":"`+strings.Repeat("x", 128-14)+`"}`),
	time.Date(2025, 10, 3, 17, 16, 9, 812345678, time.UTC), SendOptions{ID: 42, NoAck: true})

// benchDecode decodes line b.N times; line is restored each time, since
// decoding may rewrite it in place.
func benchDecode(b *testing.B, line []byte) {
	line = line[:len(line)-1] // without its "\n"
	buf := make([]byte, len(line))
	var r Request
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, line)
		if err := DecodeRequest(buf, &r); err != nil {
			b.Fatal(err)
		}
		if err := r.EventErr(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequest is the service's per-event decoding work.
func BenchmarkDecodeRequest(b *testing.B) { benchDecode(b, benchEvent) }

// BenchmarkDecodeRequestPretty decodes an event written with line breaks
// between its tokens, as a pretty-printing JSON writer would.
func BenchmarkDecodeRequestPretty(b *testing.B) {
	line := strings.NewReplacer(`,"`, ",\r\n  \"", `{"`, "{\r\n  \"").Replace(string(benchEvent))
	benchDecode(b, []byte(line))
}

// BenchmarkDecodeRequestUnicode decodes an event whose payload is mostly
// non-ASCII text.
func BenchmarkDecodeRequestUnicode(b *testing.B) {
	line := AppendSendEvent(nil, "sender", "receiver", "E",
		[]byte(`{"Message":"`+strings.Repeat("héllo wörld ", 10)+`"}`), time.Time{}, SendOptions{})
	benchDecode(b, line)
}

// BenchmarkDecodeReply is the service's work for a Reply after
// DecodeRequest.
func BenchmarkDecodeReply(b *testing.B) {
	line := AppendReply(nil, 17, []byte(`{"Answer":42,"Text":"`+strings.Repeat("x", 100)+`"}`), "")
	var r Request
	if err := DecodeRequest(line[:len(line)-1], &r); err != nil {
		b.Fatal(err)
	}
	var rp ReplyPayload
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeReply(r.Payload, &rp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateID checks a typical ASCII id and a non-ASCII one.
func BenchmarkValidateID(b *testing.B) {
	for _, id := range []string{"machine-a.worker-17", "machine-ä.wörker-17"} {
		b.Run(id, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := ValidateID([]byte(id)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckPayload is the service's one check of a compact frame's
// payload: JSON objects of one long string, 128 B and 1 KiB (what
// statebus bench sends), and a 1 KiB object of numbers and short strings.
func BenchmarkCheckPayload(b *testing.B) {
	var fields strings.Builder
	fields.WriteString(`{"items":[`)
	for i := 0; fields.Len() < 1000; i++ {
		if i > 0 {
			fields.WriteString(",")
		}
		fmt.Fprintf(&fields, `{"id":%d,"name":"item-%d","ok":true,"score":%d.5}`, i, i, i*7)
	}
	fields.WriteString(`]}`)
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"string128", []byte(`{"Message":"` + strings.Repeat("x", 128-14) + `"}`)},
		{"string1K", []byte(`{"Message":"` + strings.Repeat("x", 1024-14) + `"}`)},
		{"fields1K", []byte(fields.String())},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var buf []byte
			b.SetBytes(int64(len(tc.p)))
			b.ReportAllocs()
			for range b.N {
				if _, err := CheckPayload(tc.p, &buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
