//go:build unix

package lines

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// socketPair returns the two ends of a connected Unix socket.
func socketPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// waitTimesOut reads from l until the read deadline passes.
func waitTimesOut(t *testing.T, c net.Conn, l *Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := l.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with nothing to read: %v", err)
	}
	c.SetReadDeadline(time.Time{})
}

// On a socket, a reader waits for input without a buffer: it gives an
// empty one back before waiting, keeps one that holds part of a line, and
// its lines are whole and in order either way.
func TestSocketIdleHoldsNoBuffer(t *testing.T) {
	a, b := socketPair(t)
	l := NewReader(b, 1<<20, nil)
	if l.raw == nil {
		t.Fatal("a Unix socket is not read raw")
	}
	a.Write([]byte("one\n"))
	if line, err := l.Next(); err != nil || string(line) != "one" {
		t.Fatalf("%q %v", line, err)
	}
	waitTimesOut(t, b, l)
	if l.buf != nil {
		t.Fatalf("an idle reader holds a %d-byte buffer", len(l.buf))
	}
	a.Write([]byte("part"))
	waitTimesOut(t, b, l)
	if l.buf == nil || l.w != 4 {
		t.Fatalf("a reader in the middle of a line holds %d bytes of it", l.w)
	}
	a.Write([]byte("ial\ntwo\n"))
	for _, want := range []string{"partial", "two"} {
		if line, err := l.Next(); err != nil || string(line) != want {
			t.Fatalf("%q %v, want %q", line, err, want)
		}
	}
	// A buffer grown for a long line is not kept either.
	long := strings.Repeat("y", 200<<10)
	go a.Write([]byte(long + "\n"))
	if line, err := l.Next(); err != nil || string(line) != long {
		t.Fatalf("%.20q %v", line, err)
	}
	waitTimesOut(t, b, l)
	if l.buf != nil {
		t.Fatalf("an idle reader holds a %d-byte buffer", len(l.buf))
	}
	// Shutting the read side (how statebusd stops a connection) is the end.
	b.(*net.UnixConn).CloseRead()
	if _, err := l.Next(); err != io.EOF {
		t.Fatalf("after CloseRead: %v", err)
	}
	l.Release()
}

// Lines and frames of every size, written in random pieces from another
// goroutine, come out of a socket whole and in order while the buffer
// grows, is given back and taken again.
func TestSocketStream(t *testing.T) {
	a, b := socketPair(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	var want []string
	var stream strings.Builder
	for i := range 3000 {
		body := strconv.Itoa(i) + strings.Repeat("x", rnd.IntN(1<<uint(rnd.IntN(18))))
		if i%3 == 0 {
			stream.WriteString(frame(1, body))
			want = append(want, "1:"+body)
		} else {
			stream.WriteString(body + "\n")
			want = append(want, "0:"+body)
		}
	}
	go func() {
		s := stream.String()
		for len(s) > 0 {
			n := min(len(s), 1+rnd.IntN(100<<10))
			if _, err := a.Write([]byte(s[:n])); err != nil {
				return
			}
			s = s[n:]
			if rnd.IntN(20) == 0 {
				time.Sleep(time.Millisecond) // let the reader run dry
			}
		}
		a.Close()
	}()
	l := NewReader(b, 1<<18, nil)
	l.FrameBelow = 7
	for i := 0; ; i++ {
		typ, msg, err := l.NextMsg()
		if err != nil {
			if err != io.EOF || i != len(want) {
				t.Fatalf("after %d of %d messages: %v", i, len(want), err)
			}
			break
		}
		if got := string(rune('0'+typ)) + ":" + string(msg); i >= len(want) || got != want[i] {
			t.Fatalf("message %d: %.40q, want %.40q", i, got, want[i])
		}
	}
}
