package server_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// FuzzConn feeds a whole connection arbitrary bytes: whatever arrives, the
// service answers only well-formed response lines, closes the connection
// when the client is done, and keeps serving everyone else.
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
	} {
		f.Add([]byte(s))
	}
	srv := bustest.Start(f, func(c *server.Config) {
		c.MaxMessageBytes = 4096
		c.MaxConnections = 1000
		c.HandshakeTimeout = 5 * time.Second
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("unix", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(data)
			c.(*net.UnixConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading responses: %v (got %q)", err, out)
		}
		if len(out) > 0 && out[len(out)-1] != '\n' {
			t.Fatalf("response does not end in a newline: %q", out)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
			if len(out) == 0 {
				break
			}
			var r protocol.Response
			if err := protocol.DecodeResponse(line, &r); err != nil {
				t.Fatalf("malformed response %q to %q: %v", line, data, err)
			}
			if !bytes.HasPrefix(line, []byte(`{"Success":`)) {
				t.Fatalf("response %q does not start with Success", line)
			}
		}
		// Everyone else is unaffected: a fresh connection still works.
		p, err := net.Dial("unix", srv.Addr())
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
