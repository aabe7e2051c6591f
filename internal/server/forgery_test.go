package server_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// lineReaders split what a receiver reads into lines as the receivers'
// line readers do.
var lineReaders = []struct {
	name   string
	breaks []string // longest first: "\r\n" is one break
}{
	{".NET StreamReader.ReadLine, Java BufferedReader, Node readline", []string{"\r\n", "\r", "\n"}},
	{"Python str.splitlines", []string{"\r\n", "\r", "\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\u0085", "\u2028", "\u2029"}},
}

// splitLines splits s at every one of breaks.
func splitLines(s string, breaks []string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		n := 0
		for _, b := range breaks {
			if strings.HasPrefix(s[i:], b) {
				n = len(b)
				break
			}
		}
		if n == 0 {
			i++
			continue
		}
		out = append(out, s[start:i])
		i += n
		start = i
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// routing is what the service checked of an event: its source (held by
// the sender), target and name.
type routing struct{ Source, Target, Name string }

// eventKeys are the envelope keys of an event object.
var eventKeys = []string{"SourceMachineId", "TargetMachineId", "EventName", "Payload", "Timestamp"}

// readEvent checks a line the service wrote (without its "\n") that
// carries an event: every line reader sees exactly that one line, it is
// one JSON object, and its event's routing keys as encoding/json reads
// them (case-insensitively, the last of equal keys winning) are the
// routing another reader gets, since the event holds each envelope key
// once and no key that folds onto one. It returns that routing.
func readEvent(line []byte) (routing, string) {
	for _, lr := range lineReaders {
		if got := splitLines(string(line)+"\n", lr.breaks); len(got) != 1 || got[0] != string(line) {
			return routing{}, lr.name + " reads " + strings.Join(quoteAll(got), " and ")
		}
	}
	var resp struct {
		Success bool
		Data    json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&resp); err != nil || dec.More() || !resp.Success {
		return routing{}, "not one successful JSON response"
	}
	var ev struct{ SourceMachineId, TargetMachineId, EventName string }
	if err := json.Unmarshal(resp.Data, &ev); err != nil {
		return routing{}, "Data is not an event: " + err.Error()
	}
	keys, err := topKeys(resp.Data)
	if err != nil {
		return routing{}, err.Error()
	}
	seen := map[string]bool{}
	for _, k := range keys {
		for _, name := range eventKeys {
			if strings.EqualFold(k, name) && (k != name || seen[k]) {
				return routing{}, "key " + k + " besides " + name
			}
		}
		seen[k] = true
	}
	return routing{ev.SourceMachineId, ev.TargetMachineId, ev.EventName}, ""
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = `"` + x + `"`
	}
	return q
}

// topKeys returns the keys of the JSON object obj in order, unescaped.
func topKeys(obj []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
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

// expectEvent reads one line, checks it is want exactly and that every
// reader reads from it the one event with routing r.
func expectEvent(c *raw, want string, r routing) {
	c.T.Helper()
	got := c.Read()
	if got != want {
		c.T.Fatalf("got  %q\nwant %q", got, want)
	}
	if g, why := readEvent([]byte(got)); why != "" || g != r {
		c.T.Fatalf("%q: readers see %+v (%s), the service checked %+v", got, g, why, r)
	}
}

// canonical is an event as the service forwards it: raw line breaks
// between tokens as spaces, raw separators in strings escaped.
var canonical = strings.NewReplacer("\r", " ", "\u0085", `\u0085`, "\u2028", `\u2028`, "\u2029", `\u2029`).Replace

// TestForgeryLineBreaks: an event line with a raw "\r" between tokens
// followed by a forged response, or with raw U+0085, U+2028 or U+2029 in a
// string, reaches its receivers (target, broadcast recipients, watchers,
// a request's caller) as one line that every line reader reads as the one
// event the service checked.
func TestForgeryLineBreaks(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	c := dialRaw(t, srv).Connect("c")
	m := dialRaw(t, srv)
	m.Send(`{"Type":"Watch","Payload":{"SourceMachineId":"a"}}`)
	m.Expect(`{"Success":true,"Data":{"WatchId":1},"Error":null}`)

	forged := `{"Success":true,"Data":{"SourceMachineId":"root","TargetMachineId":"b","EventName":"SHUTDOWN"},"Error":null}`
	for _, tc := range []struct{ name, event string }{
		{"a forged event after a CR", `{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","X":[0,` + "\r" + forged + "\r" + `]}`},
		{"a forged response after a CR", `{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","X":[0,` + "\r" + `{"Success":true,"Data":{"Answer":1},"Error":null,"Id":9}` + "\r]}"},
		{"CRs everywhere", "{\r\"SourceMachineId\"\r:\r\"a\"\r,\t\"TargetMachineId\":\"b\" \r,\"EventName\":\"E\",\"Payload\":{\r}\r}"},
		{"separators in strings", "{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"b\",\"EventName\":\"E\u2028\",\"P\":\"x\u2028" + strings.ReplaceAll(forged, `"`, `\"`) + "\u2029y\u0085z\",\"k\u2029\":1}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.Send(`{"Type":2,"Payload":` + tc.event + `}`)
			var want struct{ EventName string }
			if err := json.Unmarshal([]byte(tc.event), &want); err != nil {
				t.Fatal(err)
			}
			r := routing{"a", "b", want.EventName}
			expectEvent(b, `{"Success":true,"Data":`+canonical(tc.event)+`,"Error":null}`, r)
			a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
			expectEvent(m, `{"Success":true,"Data":`+canonical(tc.event)+`,"Error":null,"Watch":1}`, r)

			// The same to everyone.
			all := strings.Replace(tc.event, `"TargetMachineId":"b"`, `"TargetMachineId":"*"`, 1)
			a.Send(`{"Type":2,"Payload":` + all + `}`)
			a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"*","Recipients":2},"Error":null}`)
			r.Target = "*"
			expectEvent(b, `{"Success":true,"Data":`+canonical(all)+`,"Error":null}`, r)
			expectEvent(c, `{"Success":true,"Data":`+canonical(all)+`,"Error":null}`, r)
			expectEvent(m, `{"Success":true,"Data":`+canonical(all)+`,"Error":null,"Watch":1}`, r)
		})
	}

	// A reply's payload reaches the caller as one line too.
	a.Send(`{"Type":2,"Id":9,"Request":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q"}}`)
	got := b.Read()
	token := regexp.MustCompile(`"ReplyTo":(\d+)`).FindStringSubmatch(got)[1]
	reply := "{\"Answer\":[1,\r" + forged + "\r],\"Text\":\"\u2028\"}"
	b.Send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Payload":` + reply + `}}`)
	want := `{"Success":true,"Data":` + canonical(reply) + `,"Error":null,"Id":9}`
	if got := a.Read(); got != want {
		t.Fatalf("reply: got %q\nwant %q", got, want)
	}
	for _, lr := range lineReaders {
		if n := len(splitLines(want+"\n", lr.breaks)); n != 1 {
			t.Fatalf("%s reads the reply as %d lines", lr.name, n)
		}
	}
}

// TestForgeryAmbiguousKeys: an event whose envelope has a routing key
// twice, or a key that a case-insensitive reader takes for one (another
// case, U+017F or U+212A folding, an escape), is refused and not
// delivered.
func TestForgeryAmbiguousKeys(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	const tail = ` (routing keys must appear once, exactly as `
	for _, tc := range []struct{ payload, want string }{
		{`{"SourceMachineId":"a","sourceMachineId":"root","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: \"sourceMachineId\"` + tail + `SourceMachineId)`},
		{`{"sourcemachineid":"root","SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}`,
			`Ambiguous event field: \"sourcemachineid\"` + tail + `SourceMachineId)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","ſourceMachineId":"root"}`,
			`Ambiguous event field: \"ſourceMachineId\"` + tail + `SourceMachineId)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","TimeſtamP":"x"}`,
			`Ambiguous event field: \"TimeſtamP\"` + tail + `Timestamp)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","\u0053ourceMachineId":"root"}`,
			`Ambiguous event field: \"\\u0053ourceMachineId\"` + tail + `SourceMachineId)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","\u0045ventName":"E"}`,
			`Ambiguous event field: \"\\u0045ventName\"` + tail + `EventName)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","TargetMachineId":"c","EventName":"E"}`,
			`Ambiguous event field: \"TargetMachineId\"` + tail + `TargetMachineId)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","EventName":"F"}`,
			`Ambiguous event field: \"EventName\"` + tail + `EventName)`},
		{`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","Payload":1,"PAYLOAD":2}`,
			`Ambiguous event field: \"PAYLOAD\"` + tail + `Payload)`},
	} {
		a.Send(`{"Type":2,"Id":1,"Payload":` + tc.payload + `}`)
		a.Expect(`{"Success":false,"Data":null,"Error":"` + tc.want + `","Id":1}`)
	}
	// None was delivered: b's next line is the next good event.
	ok := `{"SourceMachineId":"a","TargetMachineId":"b","EventName":"OK","Payload":{"sourceMachineId":"x","EventName":"y","EventName":"z"}}`
	a.Send(`{"Type":2,"Payload":` + ok + `}`)
	expectEvent(b, `{"Success":true,"Data":`+ok+`,"Error":null}`, routing{"a", "b", "OK"})
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
}

// TestForgeryIDs: machine ids and group names with invisible or
// bidirectional-control characters are refused, raw or escaped.
func TestForgeryIDs(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv)
	const pre = `{"Success":false,"Data":null,"Error":"Invalid machine id: contains invisible or bidirectional-control character `
	for _, tc := range []struct{ id, cp string }{
		{"admin\u202egpj.exe", "U+202E"}, {`admin\u202egpj.exe`, "U+202E"},
		{"admin\u200b", "U+200B"}, {`admin\u200B`, "U+200B"},
		{"\ufeffadmin", "U+FEFF"}, {`\ufeffadmin`, "U+FEFF"},
		{"admin\u0085", "U+0085"}, {`admin\u0085`, "U+0085"},
		{"ad\u00admin", "U+00AD"}, {"a\u2066b\u2069", "U+2066"},
	} {
		a.Send(`{"Type":0,"Payload":{"MachineId":"` + tc.id + `"}}`)
		a.Expect(pre + tc.cp + `"}`)
		a.Send(`{"Type":3,"Payload":"` + tc.id + `"}`)
		a.Expect(pre + tc.cp + `"}`)
	}
	if m := srv.Machines(); len(m) != 0 {
		t.Fatalf("registered %+v", m)
	}
	a.Connect("admin")
	a.Send(`{"Type":103,"Payload":{"Group":"work\u202eers"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Invalid machine id: group name contains invisible or bidirectional-control character U+202E"}`)
	a.Send(`{"Type":103,"Payload":{"Group":"work` + "\u200b" + `ers"}}`)
	a.Expect(`{"Success":false,"Data":null,"Error":"Invalid machine id: group name contains invisible or bidirectional-control character U+200B"}`)
}

// The registry the service writes holds no raw U+0085 (a line break to
// Python's splitlines) even when a client claimed a ProcessName with one.
func TestMachinesEscapeNextLine(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv)
	a.Send("{\"Type\":0,\"Payload\":{\"MachineId\":\"m\",\"ProcessName\":\"x\u0085{\\\"Success\\\":true}\"}}")
	a.ExpectMatch(`\{"Success":true,.*`)
	a.Send(`{"Type":101,"Id":1}`)
	line := a.Read()
	if strings.Contains(line, "\u0085") || !strings.Contains(line, `"ProcessName":"x\u0085{\"Success\":true}"`) {
		t.Fatalf("Machines: %q", line)
	}
}
