package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/lines"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// compact is a client of the compact framing, written from
// docs/protocol.md: JSON lines to register, frames for events.
type compact struct {
	t  *testing.T
	c  net.Conn
	lr *lines.Reader
}

func dialCompact(t *testing.T, srv *server.Server, id string) *compact {
	t.Helper()
	c, err := busaddr.Dial(context.Background(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	k := &compact{t: t, c: c, lr: lines.NewReader(c, 1<<20, nil)}
	k.lr.FrameBelow = protocol.FrameBelow
	k.write([]byte(`{"Type":0,"Id":1,"Payload":{"MachineId":"` + id + `","Framing":"compact/1"}}` + "\n" +
		`{"Type":3,"Id":2,"Payload":"` + id + `"}` + "\n"))
	k.expectLine(`\{"Success":true,"Data":\{"MachineId":"` + id + `","RegisteredAt":` + ts + `,"Framing":"compact/1"\},"Error":null,"Id":1\}`)
	k.expectLine(`\{"Success":true,"Data":\{"MachineId":"` + id + `","SubscribedAt":` + ts + `\},"Error":null,"Id":2\}`)
	return k
}

func (k *compact) write(b []byte) {
	k.t.Helper()
	if _, err := k.c.Write(b); err != nil {
		k.t.Fatal(err)
	}
}

// next reads one message: a line (typ 0) or a frame.
func (k *compact) next() (byte, []byte) {
	k.t.Helper()
	k.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, msg, err := k.lr.NextMsg()
	if err != nil {
		k.t.Fatalf("read: %v", err)
	}
	return typ, msg
}

func (k *compact) expectLine(re string) {
	k.t.Helper()
	typ, msg := k.next()
	if typ != 0 {
		k.t.Fatalf("got frame %d %q, want a line /%s/", typ, msg, re)
	}
	if !matches(re, string(msg)) {
		k.t.Fatalf("got  %s\nwant /%s/", msg, re)
	}
}

// expectFrame reads a frame of type typ and returns it decoded.
func (k *compact) expectFrame(typ byte) protocol.Response {
	k.t.Helper()
	got, msg := k.next()
	if got != typ {
		k.t.Fatalf("got message %d %q, want frame %d", got, msg, typ)
	}
	var r protocol.Response
	if err := protocol.DecodeFrame(typ, msg, &r); err != nil {
		k.t.Fatalf("frame %q: %v", msg, err)
	}
	return r
}

func (k *compact) expectError(id uint64, text string) {
	k.t.Helper()
	r := k.expectFrame(protocol.FrameError)
	if r.NumID != id || r.Error != text {
		k.t.Fatalf("error frame Id %d %q, want Id %d %q", r.NumID, r.Error, id, text)
	}
}

func (k *compact) send(src, target, name, payload string, o protocol.SendOptions) {
	k.t.Helper()
	var p []byte
	if payload != "" {
		p = []byte(payload)
	}
	k.write(protocol.AppendSendFrame(nil, src, target, name, p, o))
}

func TestFrameNegotiation(t *testing.T) {
	srv := bustest.Start(t, nil)
	dialCompact(t, srv, "a")
	// A .NET client is answered byte for byte as before.
	dialRaw(t, srv).Connect("b")
	// A service with the framing off does not confirm it: the client
	// stays with lines, and a frame is then no more than invalid JSON.
	off := bustest.Start(t, func(c *server.Config) { c.NoCompactFraming = true })
	r := dialRaw(t, off)
	r.Send(`{"Type":0,"Payload":{"MachineId":"a","Framing":"compact/1"}}`)
	r.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"a","RegisteredAt":` + ts + `\},"Error":null\}`)
	r.C.Write(protocol.AppendSendFrame(nil, "a", "a", "E", nil, protocol.SendOptions{ID: 1}))
	r.Send("")
	r.Expect(`{"Success":false,"Data":null,"Error":"Invalid JSON format"}`)
}

// A compact client and a .NET-shaped JSON client exchange events,
// broadcasts and requests, each in its own framing; the JSON client gets
// canonical lines.
func TestFrameCrossFraming(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialCompact(t, srv, "a")
	b := dialRaw(t, srv).Connect("b")
	c := dialCompact(t, srv, "c")

	// compact -> JSON: the line a .NET sender would have written, stamped
	// by the service.
	a.send("a", "b", "PING", "{\"x\":\r\n\"\u2028\"}", protocol.SendOptions{ID: 7})
	b.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"a","TargetMachineId":"b","EventName":"PING","Payload":\{"x":  "\\u2028"\},"Timestamp":` + ts + `\},"Error":null\}`)
	if ack := a.expectFrame(protocol.FrameAck); ack.NumID != 7 || string(ack.AckTarget) != "b" || ack.Recipients != -1 {
		t.Fatalf("ack %+v", ack)
	}
	// Names that need escaping are escaped, never taken as JSON.
	a.send("a", "b", `E","TargetMachineId":"x`, "", protocol.SendOptions{NoAck: true})
	b.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E\\",\\"TargetMachineId\\":\\"x","Payload":null,"Timestamp":` + ts + `\},"Error":null\}`)

	// JSON -> compact: the sender's fields and timestamp in a frame.
	b.Send(`{"Type":2,"Payload":{"SourceMachineId":"b","TargetMachineId":"a","EventName":"PONG","Payload":[1],"Timestamp":"2025-10-03T17:16:09.8123456Z","Extra":true}}`)
	ev := a.expectFrame(protocol.FrameEvent)
	if e := ev.Event; string(e.Source) != "b" || string(e.Target) != "a" || string(e.Name) != "PONG" || string(e.Payload) != "[1]" ||
		ev.Time != time.Date(2025, 10, 3, 17, 16, 9, 812345600, time.UTC).UnixNano() {
		t.Fatalf("event frame %+v", ev)
	}
	b.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"a"},"Error":null}`)

	// Broadcast from a compact sender: a line to b, a frame to c, an ack
	// frame with the recipients to a.
	a.send("a", "*", "ALL", `{"n":1}`, protocol.SendOptions{ID: 8})
	b.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"a","TargetMachineId":"\*","EventName":"ALL","Payload":\{"n":1\},"Timestamp":` + ts + `\},"Error":null\}`)
	if e := c.expectFrame(protocol.FrameEvent); string(e.Event.Name) != "ALL" || string(e.Event.Payload) != `{"n":1}` || e.Time == 0 {
		t.Fatalf("broadcast frame %+v", e)
	}
	if ack := a.expectFrame(protocol.FrameAck); ack.NumID != 8 || ack.Recipients != 2 {
		t.Fatalf("broadcast ack %+v", ack)
	}

	// Request compact -> JSON, answered in JSON: a Result frame.
	a.send("a", "b", "Q", `1`, protocol.SendOptions{ID: 9, Request: true, TimeoutMs: 5000})
	line := b.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Q","Payload":1,"Timestamp":` + ts + `\},"Error":null,"ReplyTo":\d+,"Deadline":` + ts + `\}`)
	token := string(protocol.Field([]byte(line), "ReplyTo"))
	b.Send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Payload":{"answer":42}}}`)
	if res := a.expectFrame(protocol.FrameResult); res.NumID != 9 || string(res.Data) != `{"answer":42}` {
		t.Fatalf("result %+v", res)
	}
	// Request JSON -> compact, answered by a Reply frame: a JSON response.
	b.Send(`{"Type":2,"Id":"r1","Request":true,"TimeoutMs":5000,"Payload":{"SourceMachineId":"b","TargetMachineId":"a","EventName":"Q2"}}`)
	req := a.expectFrame(protocol.FrameEvent)
	if req.ReplyTo == 0 || req.DeadlineNs == 0 || string(req.Event.Name) != "Q2" {
		t.Fatalf("request frame %+v", req)
	}
	a.write(protocol.AppendReplyFrame(nil, req.ReplyTo, []byte(`"yes"`), ""))
	b.Expect(`{"Success":true,"Data":"yes","Error":null,"Id":"r1"}`)
	// An error reply is the responder's error, in each framing.
	a.send("a", "c", "Q3", "", protocol.SendOptions{ID: 10, Request: true})
	req = c.expectFrame(protocol.FrameEvent)
	c.write(protocol.AppendReplyFrame(nil, req.ReplyTo, nil, "no such thing"))
	a.expectError(10, "Responder error: no such thing")

	// Errors are frames with the request's Id.
	a.send("a", "nobody", "E", "", protocol.SendOptions{ID: 11})
	a.expectError(11, "Target machine not connected: nobody")
	a.send("b", "a", "E", "", protocol.SendOptions{ID: 12})
	a.expectError(12, "Machine id not registered on this connection: b")
}

func TestFrameMalformed(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) { c.MaxMessageBytes = 1024 })
	a := dialCompact(t, srv, "a")
	for _, tc := range []struct {
		name  string
		frame []byte
		id    uint64
		want  string
	}{
		{"service's type", protocol.AppendAckFrame(nil, 1, "a", -1), 0, "Malformed frame: frame type 4 is not one a client sends (SendEvent 1, Reply 2)"},
		{"empty send", []byte{1, 0, 0, 0, 0}, 0, "Malformed frame: it ends before its flags"},
		{"cut", []byte{1, 4, 0, 0, 0, 0, 1, 5, 9}, 5, "Malformed frame: its source is longer than the frame (9 bytes)"},
		{"payload", protocol.AppendSendFrame(nil, "a", "a", "E", []byte(`{"x"`), protocol.SendOptions{ID: 6}), 6, "Invalid JSON format"},
		{"deep", protocol.AppendSendFrame(nil, "a", "a", "E", []byte(strings.Repeat("[", 65)+strings.Repeat("]", 65)), protocol.SendOptions{ID: 7}), 7, "JSON nested deeper than 64 levels: the payload nests more than 62 levels deep, the most an event's payload may (it sits two levels deep in the line a JSON receiver gets)"},
		{"too long", protocol.AppendSendFrame(nil, "a", "a", "E", []byte(`"`+strings.Repeat("x", 2000)+`"`), protocol.SendOptions{ID: 8}), 0, "Message exceeds 1024 bytes"},
		{"reply", protocol.AppendReplyFrame(nil, 99, nil, ""), 0, "No request is waiting for ReplyTo 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.write(tc.frame)
			a.expectError(tc.id, tc.want)
		})
	}
	// The connection survives every one of them.
	a.send("a", "a", "SELF", `{"ok":1}`, protocol.SendOptions{ID: 20})
	if ev := a.expectFrame(protocol.FrameEvent); string(ev.Event.Name) != "SELF" {
		t.Fatalf("%+v", ev)
	}
	if ack := a.expectFrame(protocol.FrameAck); ack.NumID != 20 {
		t.Fatalf("%+v", ack)
	}
	// JSON lines still work on a compact connection.
	a.write([]byte(`{"Type":100,"Id":21}` + "\n"))
	a.expectLine(`\{"Success":true,"Data":\{"IsHealthy":true.*,"Id":21\}`)
}

func matches(re, s string) bool {
	return regexp.MustCompile("^" + re + "$").MatchString(s)
}

// FuzzConnCompact is FuzzConn for a connection that negotiated the compact
// framing: whatever it sends after its Register, it gets well-formed lines
// and frames, and a .NET-shaped JSON client ("j") that it may send to gets
// only canonical lines: one line to every line reader, one event whose
// routing every JSON reader reads as the service checked it.
func FuzzConnCompact(f *testing.F) {
	o := protocol.SendOptions{ID: 1}
	for _, s := range [][]byte{
		protocol.AppendSendFrame(nil, "a", "j", "E", []byte(`{"x":"\u2028"}`), o),
		protocol.AppendSendFrame(nil, "a", "*", "E\n\"x", []byte("[1,\r\n2]"), protocol.SendOptions{NoAck: true}),
		protocol.AppendSendFrame(nil, "a", "j", "Q", nil, protocol.SendOptions{ID: 2, Request: true, TimeoutMs: 1, TraceParent: "00-x", TraceState: "a=\"b"}),
		append(protocol.AppendReplyFrame(nil, 1, []byte(`1`), ""), protocol.AppendSendFrame(nil, "j", "j", "E", nil, o)...),
		[]byte("{\"Type\":100}\n\x01\x03\x00\x00\x00\x00\x01"),
		[]byte{1, 0xff, 0xff, 0xff, 0xff},
	} {
		f.Add(s)
	}
	srv := bustest.Start(f, func(c *server.Config) {
		c.MaxMessageBytes = 4096
		c.MaxConnections = 1000
		c.HandshakeTimeout = 5 * time.Second
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		// The last run's connections may not be gone yet: j and a are
		// free once the service has dropped them.
		jid := "j"
		var j *raw
		bustest.Eventually(t, 5*time.Second, func() bool {
			j = dialRaw(t, srv)
			j.Send(`{"Type":0,"Payload":{"MachineId":"j"}}`)
			j.Send(`{"Type":3,"Payload":"j"}`)
			reg, sub := j.Read(), j.Read()
			ok := strings.HasPrefix(reg, `{"Success":true`) && strings.HasPrefix(sub, `{"Success":true`)
			if !ok {
				j.C.Close()
			}
			return ok
		}, "j stayed registered")
		bustest.Eventually(t, 5*time.Second, func() bool {
			return !slices.ContainsFunc(srv.Machines(), func(i router.Info) bool { return i.MachineID == "a" })
		}, "a stayed registered")
		c, err := busaddr.Dial(context.Background(), srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write([]byte(`{"Type":0,"Payload":{"MachineId":"a","Framing":"compact/1"}}` + "\n" + `{"Type":3,"Payload":"a"}` + "\n"))
			c.Write(data)
			c.(interface{ CloseWrite() error }).CloseWrite()
		}()
		lr := lines.NewReader(c, 1<<20, nil)
		lr.FrameBelow = protocol.FrameBelow
		for {
			typ, msg, err := lr.NextMsg()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			var r protocol.Response
			if typ != 0 {
				err = protocol.DecodeFrame(typ, msg, &r)
			} else {
				err = protocol.DecodeResponse(msg, &r)
			}
			if err != nil {
				t.Fatalf("malformed message %d %q to %q: %v", typ, msg, data, err)
			}
		}
		// What j got: only canonical lines, ended by its Health answer.
		j.Send(`{"Type":100,"Id":"end"}`)
		for {
			line := j.Read()
			if strings.HasSuffix(line, `"Id":"end"}`) {
				break
			}
			if strings.ContainsAny(line, "\r\u2028\u2029\u0085") {
				t.Fatalf("line %q to %s holds a line break for some reader (sent %q)", line, jid, data)
			}
			var ev struct{ Data struct{ EventName string } }
			if json.Unmarshal([]byte(line), &ev) != nil {
				t.Fatalf("line %q to %s is not JSON (sent %q)", line, jid, data)
			}
			if ev.Data.EventName == "" {
				continue
			}
			var r protocol.Response
			if err := protocol.DecodeResponse([]byte(line), &r); err != nil || !r.IsEvent {
				t.Fatalf("event line %q: %v", line, err)
			}
			got, why := readEvent([]byte(line))
			if why != "" || got != (routing{string(r.Event.Source), string(r.Event.Target), string(r.Event.Name)}) || got.Source != "a" {
				t.Fatalf("event line %q to %s: readers see %+v (%s), the service %+v (sent %q)", line, jid, got, why, r.Event, data)
			}
		}
	})
}

// A routing rule's redirect and copy keep the event's target as sent, for
// compact and JSON receivers alike, whichever framing the sender used; a
// broadcast's frame, built once, reaches every compact receiver whole.
func TestFrameRoutingRules(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.Routes = []router.RouteRule{
			{Match: router.RuleMatch{EventName: "ORDER_*"}, Action: "copy", To: "audit"},
			{Match: router.RuleMatch{TargetMachineId: "billing"}, Action: "redirect", To: "v2"},
		}
	})
	shop := dialCompact(t, srv, "shop")
	audit := dialRaw(t, srv).Connect("audit")
	v2 := dialCompact(t, srv, "v2")
	shop.send("shop", "billing", "ORDER_PLACED", `{"Id":7}`, protocol.SendOptions{ID: 1})
	audit.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"shop","TargetMachineId":"billing","EventName":"ORDER_PLACED","Payload":\{"Id":7\},"Timestamp":` + ts + `\},"Error":null\}`)
	if ev := v2.expectFrame(protocol.FrameEvent); string(ev.Event.Target) != "billing" || string(ev.Event.Name) != "ORDER_PLACED" {
		t.Fatalf("redirected frame %+v", ev)
	}
	if ack := shop.expectFrame(protocol.FrameAck); ack.NumID != 1 || string(ack.AckTarget) != "v2" {
		t.Fatalf("ack %+v", ack)
	}
	// A JSON sender's redirected event: the compact receiver sees the
	// target as sent too.
	j := dialRaw(t, srv).Connect("j")
	j.Send(`{"Type":2,"Payload":{"SourceMachineId":"j","TargetMachineId":"billing","EventName":"E"}}`)
	if ev := v2.expectFrame(protocol.FrameEvent); string(ev.Event.Target) != "billing" {
		t.Fatalf("redirected frame %+v", ev)
	}
	j.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"v2"},"Error":null}`)

	// Broadcast to several compact receivers, one of them holding two ids.
	multi := dialCompact(t, srv, "m1")
	multi.write([]byte(`{"Type":0,"Id":3,"Payload":{"MachineId":"m2"}}` + "\n" + `{"Type":3,"Id":4,"Payload":"m2"}` + "\n"))
	multi.expectLine(`\{"Success":true.*"Id":3\}`)
	multi.expectLine(`\{"Success":true.*"Id":4\}`)
	shop.send("shop", "*", "ALL", `[1,2,3]`, protocol.SendOptions{NoAck: true})
	for _, k := range []*compact{v2, multi, multi} {
		ev := k.expectFrame(protocol.FrameEvent)
		if string(ev.Event.Name) != "ALL" || string(ev.Event.Payload) != "[1,2,3]" || string(ev.Event.Source) != "shop" {
			t.Fatalf("broadcast frame %+v", ev)
		}
	}
	audit.ExpectMatch(`\{"Success":true,"Data":\{"SourceMachineId":"shop","TargetMachineId":"\*","EventName":"ALL".*`)
}
