package protocol

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestAmbiguousKeys(t *testing.T) {
	const tail = ` (routing keys must appear once, exactly as `
	for _, tc := range []struct{ payload, want string }{
		{`{"SourceMachineId":"a","sourceMachineId":"root","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: "sourceMachineId"` + tail + `SourceMachineId)`},
		{`{"SOURCEMACHINEID":"root","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: "SOURCEMACHINEID"` + tail + `SourceMachineId)`},
		{`{"SourceMachineId":"a","ſourceMachineId":"root","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: "ſourceMachineId"` + tail + `SourceMachineId)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","TimeſtamP":1}`,
			`Ambiguous event field: "TimeſtamP"` + tail + `Timestamp)`},
		{`{"SourceMachıneId":"root","SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: "SourceMachıneId"` + tail + `SourceMachineId)`},
		{`{"SourceMachineİd":"root","SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: "SourceMachineİd"` + tail + `SourceMachineId)`},
		{`{"\u0053ourceMachineId":"a","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: "\u0053ourceMachineId"` + tail + `SourceMachineId)`},
		{`{"SourceMachineId":"a","\u0073ourceMachineId":"root","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: "\u0073ourceMachineId"` + tail + `SourceMachineId)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","TargetMachineId":"c","EventName":"E"}`,
			`Ambiguous event field: "TargetMachineId"` + tail + `TargetMachineId)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","eventname":"F"}`,
			`Ambiguous event field: "eventname"` + tail + `EventName)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":1,"Payload":2}`,
			`Ambiguous event field: "Payload"` + tail + `Payload)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","PAYLOAD":1}`,
			`Ambiguous event field: "PAYLOAD"` + tail + `Payload)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Timestamp":1,"Timestamp":2}`,
			`Ambiguous event field: "Timestamp"` + tail + `Timestamp)`},
		// The first ambiguity is reported, before any missing field.
		{`{"eventName":"E","EventName":"E","EventName":"F"}`,
			`Ambiguous event field: "eventName"` + tail + `EventName)`},
	} {
		t.Run(tc.payload, func(t *testing.T) {
			var r Request
			if err := DecodeRequest([]byte(`{"Type":2,"Id":5,"Payload":`+tc.payload+`}`), &r); err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			err := r.EventErr()
			if err == nil || Wire(err).Text != tc.want {
				t.Fatalf("EventErr = %v\nwant        %s", err, tc.want)
			}
			if pe := ParseError(Wire(err).Text); pe.Unwrap() != ErrAmbiguousField {
				t.Fatalf("kind %v", pe.Unwrap())
			}
			var ev Event
			if err := DecodeEvent([]byte(tc.payload), &ev); err == nil || Wire(err).Text != tc.want {
				t.Fatalf("DecodeEvent: %v", err)
			}
		})
	}
	// Other keys, whatever their spelling, are the sender's business.
	for _, p := range []string{
		`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Sourcemachine":1,"Source":2,"Target":3,"Name":4,"payload_":5,"\u0058":6,"SourceMachineIdX":7}`,
		`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":{"SourceMachineId":"x","SourceMachineId":"y","eventname":"z"}}`,
	} {
		if err := DecodeEvent([]byte(p), &Event{}); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// foldRunes holds every non-ASCII character that Unicode simple case
// folding (strings.EqualFold), upper-casing or lower-casing takes to an
// ASCII letter.
func TestFoldRunes(t *testing.T) {
	letter := func(m rune) byte {
		if m|0x20 >= 'a' && m|0x20 <= 'z' {
			return byte(m | 0x20)
		}
		return 0
	}
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		var to byte
		for f := unicode.SimpleFold(r); f != r && to == 0; f = unicode.SimpleFold(f) {
			to = letter(f) // what strings.EqualFold compares
		}
		for _, m := range []rune{unicode.ToUpper(r), unicode.ToLower(r),
			unicode.ToUpper(unicode.ToLower(r)), unicode.ToLower(unicode.ToUpper(r))} {
			if to == 0 && m < utf8.RuneSelf {
				to = letter(m)
			}
		}
		if got := foldRune(r); got != to {
			t.Errorf("foldRune(%U) = %q, want %q", r, got, to)
		}
	}
	// Every key strings.EqualFold matches with an envelope key is caught,
	// and only keys of the lengths foldLens names need the comparison.
	for _, name := range eventKeys {
		variants := []string{name, strings.ToLower(name), strings.ToUpper(name)}
		for i := range name {
			for _, f := range foldRunes {
				if name[i]|0x20 == f.c {
					variants = append(variants, name[:i]+string(f.r)+name[i+1:])
				}
			}
		}
		all := name
		for _, f := range foldRunes {
			all = strings.NewReplacer(string(f.c), string(f.r), string(f.c-0x20), string(f.r)).Replace(all)
		}
		variants = append(variants, all)
		for _, v := range variants {
			if !mayFold([]byte(v)) || foldKey([]byte(v)) != name {
				t.Errorf("%q: mayFold %v, foldKey %q, want %s", v, mayFold([]byte(v)), foldKey([]byte(v)), name)
			}
		}
	}
	for _, k := range []string{"", "Sourc", "SourceMachineIdd", "SourceMachine1d", "EventNam\u00e9", "Eventname\xff"} {
		if n := foldKey([]byte(k)); n != "" {
			t.Errorf("foldKey(%q) = %q", k, n)
		}
	}
}
