package protocol

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// splitLines splits s as the line readers a receiver may use do: .NET's
// StreamReader.ReadLine, Java's BufferedReader and Node's readline at
// "\r", "\n" and "\r\n"; with all, also as Python's str.splitlines, at
// "\v", "\f", "\x1c".."\x1e", U+0085, U+2028 and U+2029.
func splitLines(s string, all bool) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		brk := r == '\r' || r == '\n'
		if all {
			brk = brk || strings.ContainsRune("\v\f\x1c\x1d\x1e\u0085\u2028\u2029", r)
		}
		if !brk {
			i += n
			continue
		}
		out = append(out, s[start:i])
		if r == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			n = 2
		}
		i += n
		start = i
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// forwardable checks the promise about what the service forwards: one
// line for every line reader, with the meaning it had before decoding.
func forwardable(t *testing.T, fwd []byte, orig string) {
	t.Helper()
	if lines := splitLines(string(fwd), true); len(lines) != 1 {
		t.Fatalf("forwarded %q is %d lines to some line reader", fwd, len(lines))
	}
	var want, got any
	if err := json.Unmarshal([]byte(orig), &want); err != nil {
		t.Fatalf("original %q: %v", orig, err)
	}
	if err := json.Unmarshal(fwd, &got); err != nil {
		t.Fatalf("forwarded %q: %v", fwd, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("forwarded %q means %v, the original %q meant %v", fwd, got, orig, want)
	}
}

func TestForwardedLineBreaks(t *testing.T) {
	for _, payload := range []string{
		"{\"SourceMachineId\":\"a\",\r\"TargetMachineId\":\"b\",\"EventName\":\"E\"}",
		"{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"b\",\"EventName\":\"E\",\"X\":[0,\r{\"Success\":true,\"Data\":{\"SourceMachineId\":\"root\",\"TargetMachineId\":\"b\",\"EventName\":\"FORGED\"},\"Error\":null}\r]}",
		"{\r\n \"SourceMachineId\" :\n\"a\" ,\r\n \"TargetMachineId\":\"b\",\"EventName\":\"E\"\r\n}",
		"{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"b\",\"EventName\":\"E\",\"Payload\":\"x\u2028{}\u2029y\u0085z\"}",
		"{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"b\",\"EventName\":\"E\u2028\",\"k\u2029\":\r[\"\u0085\",\"é\u2028\"]}",
	} {
		line := "{\"Type\":2,\r\"Id\":\"i\u2028d\",\"Payload\":" + payload + "\r}"
		var r Request
		if err := DecodeRequest([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if err := r.EventErr(); err != nil {
			t.Fatalf("%q: %v", payload, err)
		}
		forwardable(t, r.Payload, payload)
		forwardable(t, AppendDelivery(nil, r.Payload)[:len(AppendDelivery(nil, r.Payload))-1],
			`{"Success":true,"Data":`+payload+`,"Error":null}`)
		if string(r.ID) != `"i\u2028d"` {
			t.Errorf("Id %q: want the separator escaped", r.ID)
		}
		var ev Event
		if err := DecodeEvent([]byte(payload), &ev); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Source, r.Event.Source) || !bytes.Equal(ev.Target, r.Event.Target) ||
			!bytes.Equal(ev.Name, r.Event.Name) {
			t.Errorf("%q: event %+v, want %+v", payload, r.Event, ev)
		}
		if r.Event.Payload != nil && !bytes.Contains(r.Payload, r.Event.Payload) {
			t.Errorf("Event.Payload %q is not part of Payload %q", r.Event.Payload, r.Payload)
		}

		// A Reply's payload is forwarded too.
		reply := "{\"ReplyTo\":1,\r\"Payload\":" + payload + "}"
		var rp ReplyPayload
		if err := DecodeReply([]byte(reply), &rp); err != nil {
			t.Fatal(err)
		}
		forwardable(t, rp.Payload, payload)
	}
}

// Python's splitlines also splits at \v, \f and \x1c..\x1e: JSON allows
// them neither between tokens nor raw in strings.
func TestOtherLineBreaksRefused(t *testing.T) {
	for _, c := range "\v\f\x1c\x1d\x1e" {
		for _, line := range []string{
			`{"Type":2,"Payload":{"SourceMachineId":"a",` + string(c) + `"TargetMachineId":"b","EventName":"E"}}`,
			`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E` + string(c) + `"}}`,
		} {
			var r Request
			if err := DecodeRequest([]byte(line), &r); err == nil || Wire(err).Text != "Invalid JSON format" {
				t.Errorf("%q: err %v, want Invalid JSON format", line, err)
			}
		}
	}
	// U+0085, U+2028, U+2029 are not white space between tokens.
	for _, c := range "\u0085\u2028\u2029" {
		line := `{"Type":2,` + string(c) + `"Payload":{}}`
		if err := DecodeRequest([]byte(line), &Request{}); err == nil {
			t.Errorf("%q accepted", line)
		}
	}
}

// The common path allocates nothing; a payload that needs escapes reuses
// the Request's buffer.
func TestDecodeRequestAllocs(t *testing.T) {
	for _, line := range []string{
		string(benchEvent[:len(benchEvent)-1]),
		"{\"Type\":2,\r\"Payload\":{\"SourceMachineId\":\"a\",\r\n\"TargetMachineId\":\"b\",\"EventName\":\"E\"}}",
		"{\"Type\":2,\"Payload\":{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"b\",\"EventName\":\"E\",\"P\":\"\u2028\"}}",
	} {
		buf := []byte(line)
		var r Request
		n := testing.AllocsPerRun(100, func() {
			copy(buf, line)
			if err := DecodeRequest(buf, &r); err != nil || r.EventErr() != nil {
				t.Fatal(err, r.EventErr())
			}
		})
		if n != 0 {
			t.Errorf("%q: %v allocations", line, n)
		}
	}
}

func TestAppendStringSeparators(t *testing.T) {
	got := string(AppendString(nil, "a\u0085b\u2028c\u2029d\re\xff"))
	if want := `"a\u0085b\u2028c\u2029d\re\ufffd"`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := string(appendStringBytes(nil, []byte("x\u2028"))); got != `"x\u2028"` {
		t.Fatalf("appendStringBytes: %s", got)
	}
}

// A Request does not keep a long payload's copy past the next decode.
func TestDecodeRequestDropsLongCopy(t *testing.T) {
	long := `{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","P":"` +
		strings.Repeat("\u2028", maxKeptBuf) + `"}}`
	var r Request
	if err := DecodeRequest([]byte(long), &r); err != nil || len(r.Payload) < 6*maxKeptBuf {
		t.Fatalf("err %v, payload %d bytes", err, len(r.Payload))
	}
	if err := DecodeRequest(benchEvent[:len(benchEvent)-1], &r); err != nil || r.buf != nil {
		t.Fatalf("err %v, kept %d bytes", err, cap(r.buf))
	}
}
