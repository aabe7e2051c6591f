package bustest

import (
	"bufio"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
)

// Raw is a client that talks bytes exactly as the .NET client does, for
// tests that check the wire byte for byte: a UTF-8 BOM before its first
// line (DialRaw), one JSON object per line. Its methods fail the test on
// any error. C and R are there for tests that read, write or close the
// connection themselves.
type Raw struct {
	T testing.TB
	C net.Conn
	R *bufio.Reader
}

// NewRaw wraps a connection that is already set up (a TLS or TCP one,
// whose test writes the BOM itself or not at all).
func NewRaw(t testing.TB, c net.Conn) *Raw {
	return &Raw{T: t, C: c, R: bufio.NewReader(c)}
}

// DialRaw connects to the bus at addr (busaddr.Dial: a socket on Unix, a
// named pipe on Windows), closes the connection when the test ends, and
// sends the BOM in a write of its own, as Mono does. A refused connection
// may already be closed then: its test reads why.
func DialRaw(t testing.TB, addr string) *Raw {
	t.Helper()
	c, err := busaddr.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte{0xEF, 0xBB, 0xBF})
	return NewRaw(t, c)
}

// Send writes line and a line feed.
func (r *Raw) Send(line string) {
	r.T.Helper()
	if _, err := r.C.Write([]byte(line + "\n")); err != nil {
		r.T.Fatal(err)
	}
}

// Read reads one line, without its line feed, within 10 seconds.
func (r *Raw) Read() string {
	r.T.Helper()
	r.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.R.ReadString('\n')
	if err != nil {
		r.T.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// Expect reads one line and checks it equals want exactly.
func (r *Raw) Expect(want string) {
	r.T.Helper()
	if got := r.Read(); got != want {
		r.T.Fatalf("got  %s\nwant %s", got, want)
	}
}

// ExpectMatch reads one line, checks the whole of it matches the regular
// expression re and returns it.
func (r *Raw) ExpectMatch(re string) string {
	r.T.Helper()
	got := r.Read()
	if !regexp.MustCompile("^" + re + "$").MatchString(got) {
		r.T.Fatalf("got  %s\nwant /%s/", got, re)
	}
	return got
}

// Timestamp is a regular expression for a time as .NET writes it:
// exactly 7 fractional digits, in quotes.
const Timestamp = `"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"`

// Connect registers and subscribes id as the .NET client does, and
// checks both answers.
func (r *Raw) Connect(id string) *Raw {
	r.T.Helper()
	return r.connect(id, "")
}

// ConnectDurable is Connect with the registration declaring id durable
// (the extension's "Durable":true).
func (r *Raw) ConnectDurable(id string) *Raw {
	r.T.Helper()
	return r.connect(id, `,"Durable":true`)
}

func (r *Raw) connect(id, extra string) *Raw {
	r.T.Helper()
	r.Send(`{"Type":0,"Payload":{"MachineId":"` + id + `","ProcessName":"TestClient","ProcessId":4242,"RegisteredAt":"2025-10-03T17:16:09.8123456Z"` + extra + `}}`)
	r.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"` + id + `","RegisteredAt":` + Timestamp + `\},"Error":null\}`)
	r.Send(`{"Type":3,"Payload":"` + id + `"}`)
	r.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"` + id + `","SubscribedAt":` + Timestamp + `\},"Error":null\}`)
	return r
}
