package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// FuzzConn feeds a whole connection arbitrary bytes: whatever arrives, the
// service answers only well-formed response lines, closes the connection
// when the client is done, and keeps serving everyone else. Every event
// the connection gets (it can send to itself) is one line to every line
// reader and one JSON object whose routing keys, read by encoding/json,
// are those the service checked: a source the connection held and a
// target it held (or a group).
func FuzzConn(f *testing.F) {
	for _, s := range []string{
		"\xEF\xBB\xBF{\"Type\":0,\"Payload\":{\"MachineId\":\"a\"}}\n{\"Type\":3,\"Payload\":\"a\"}\n" +
			"{\"Type\":2,\"Id\":1,\"Payload\":{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"a\",\"EventName\":\"E\",\"Payload\":[1]}}\n",
		"{\"Type\":\"Subscribe\",\"Payload\":\"b\"}\r\n{\"Type\":2,\"Payload\":{\"SourceMachineId\":\"b\",\"TargetMachineId\":\"*\",\"EventName\":\"E\"}}\n",
		"{\"Type\":100}\n{\"Type\":101,\"Id\":\"x\"}\n{\"Type\":1,\"Payload\":\"zz\"}\n",
		"not json\n\n   \n[1]\n{\"Type\":9}\n",
		"{\"Type\":0,\"Payload\":{\"MachineId\":\"a\x01\"}}\n{\"Type\":2,\"Payload\":\"x\"}\n",
		"{\"Type\":0,\"Payload\":" + string(bytes.Repeat([]byte("["), 70)) + "}\n",
		"half a line",
		"{\"Type\":3,\"Payload\":\"a\"}\n{\"Type\":2,\"Payload\":{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"a\",\"EventName\":\"E\",\"X\":[0,\r" +
			"{\"Success\":true,\"Data\":{\"SourceMachineId\":\"root\",\"TargetMachineId\":\"a\",\"EventName\":\"F\"},\"Error\":null}\r]}}\n",
		"{\"Type\":3,\"Payload\":\"a\"}\n{\"Type\":2,\"Payload\":{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"a\",\"EventName\":\"E\u2028\",\"P\":\"\u0085\u2029\"}}\n" +
			"{\"Type\":2,\"Payload\":{\"SourceMachineId\":\"a\",\"sourceMachineId\":\"b\",\"TargetMachineId\":\"a\",\"EventName\":\"E\"}}\n" +
			"{\"Type\":103,\"Payload\":{\"Group\":\"g\"}}\n{\"Type\":2,\"Request\":true,\"Payload\":{\"SourceMachineId\":\"a\",\"TargetMachineId\":\"@g\",\"EventName\":\"Q\"}}\n",
	} {
		f.Add([]byte(s))
	}
	srv := bustest.Start(f, func(c *server.Config) {
		c.MaxMessageBytes = 4096
		c.MaxConnections = 1000
		c.HandshakeTimeout = 5 * time.Second
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := busaddr.Dial(context.Background(), srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(data)
			c.(interface{ CloseWrite() error }).CloseWrite() // a Unix socket or a pipe
		}()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading responses: %v (got %q)", err, out)
		}
		if len(out) > 0 && out[len(out)-1] != '\n' {
			t.Fatalf("response does not end in a newline: %q", out)
		}
		var lines [][]byte
		if len(out) > 0 {
			lines = bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
		}
		// The ids this connection held: every event it gets was sent by
		// one of them, to one of them or to a group.
		ids := map[string]bool{}
		for _, line := range lines {
			var held struct{ Data struct{ MachineId string } }
			if json.Unmarshal(line, &held) == nil && held.Data.MachineId != "" {
				ids[held.Data.MachineId] = true
			}
		}
		for _, line := range lines {
			var r protocol.Response
			if err := protocol.DecodeResponse(line, &r); err != nil {
				t.Fatalf("malformed response %q to %q: %v", line, data, err)
			}
			if !bytes.HasPrefix(line, []byte(`{"Success":`)) {
				t.Fatalf("response %q does not start with Success", line)
			}
			if bytes.IndexByte(line, '\r') >= 0 {
				t.Fatalf("response %q to %q holds a raw CR", line, data)
			}
			// Every line that carries an event, for any JSON reader (the
			// case-insensitive encoding/json included), is one line to
			// every line reader and one event whose routing every reader
			// reads as the service checked it.
			var ev struct{ Data struct{ EventName string } }
			if json.Unmarshal(line, &ev) != nil || ev.Data.EventName == "" {
				continue
			}
			got, why := readEvent(line)
			if why != "" || !r.IsEvent || got != (routing{string(r.Event.Source), string(r.Event.Target), string(r.Event.Name)}) {
				t.Fatalf("event line %q to %q: readers see %+v (%s), the service %+v", line, data, got, why, r.Event)
			}
			if !ids[got.Source] || !ids[got.Target] && !strings.HasPrefix(got.Target, "@") {
				t.Fatalf("event line %q to %q: routed from %q to %q, this connection held %v", line, data, got.Source, got.Target, ids)
			}
		}
		// Everyone else is unaffected: a fresh connection still works.
		p, err := busaddr.Dial(context.Background(), srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		p.SetDeadline(time.Now().Add(10 * time.Second))
		p.Write([]byte("{\"Type\":100}\n"))
		buf := make([]byte, 16)
		if _, err := io.ReadFull(p, buf); err != nil || string(buf) != `{"Success":true,` {
			t.Fatalf("service unhealthy after %q: %q %v", data, buf, err)
		}
	})
}
