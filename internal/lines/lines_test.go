package lines

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t testing.TB, r io.Reader, max int) (lines []string, tooLong int) {
	lr := NewReader(r, max, nil)
	for {
		line, err := lr.Next()
		if err == ErrTooLong {
			tooLong++
			continue
		}
		if err == io.EOF {
			return lines, tooLong
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(line))
	}
}

func TestLines(t *testing.T) {
	in := "a\nbb\r\n\nlong-" + strings.Repeat("x", 100) + "\nc\npartial"
	// One byte per read exercises every boundary.
	got, tooLong := readAll(t, iotest.OneByteReader(strings.NewReader(in)), 50)
	want := []string{"a", "bb", "", "c"}
	if strings.Join(got, "|") != strings.Join(want, "|") || tooLong != 1 {
		t.Fatalf("got %q (%d too long), want %q (1)", got, tooLong, want)
	}
}

func TestLongLineMemory(t *testing.T) {
	// A 10 MB line with a 1 KB limit: discarded without holding it.
	r := io.MultiReader(strings.NewReader(strings.Repeat("x", 10<<20) + "\nok\n"))
	lr := NewReader(r, 1024, nil)
	if _, err := lr.Next(); err != ErrTooLong {
		t.Fatalf("err = %v", err)
	}
	if cap(lr.buf) > 128<<10 {
		t.Fatalf("buffer grew to %d bytes for a 1 KB limit", cap(lr.buf))
	}
	if line, err := lr.Next(); err != nil || string(line) != "ok" {
		t.Fatalf("next line %q %v", line, err)
	}
}

// FuzzLines checks the reader against bytes.Split for any input and read
// sizes.
func FuzzLines(f *testing.F) {
	f.Add([]byte("a\nb\r\n\n"), 3)
	f.Add([]byte("x"), 1)
	f.Fuzz(func(t *testing.T, data []byte, chunk int) {
		const max = 64
		var r io.Reader = bytes.NewReader(data)
		if chunk%4 == 0 {
			r = iotest.OneByteReader(r)
		} else if chunk%4 == 1 {
			r = iotest.HalfReader(r)
		}
		got, tooLong := readAll(t, r, max)
		parts := bytes.Split(data, []byte("\n"))
		parts = parts[:len(parts)-1] // the unterminated tail is not a line
		var want []string
		wantLong := 0
		for _, p := range parts {
			if len(p) > max {
				wantLong++
				continue
			}
			want = append(want, string(bytes.TrimSuffix(p, []byte("\r"))))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) != len(want) || tooLong != wantLong {
			t.Fatalf("got %q (%d long), want %q (%d long)", got, tooLong, want, wantLong)
		}
	})
}

// frame makes a frame of type typ around body.
func frame(typ byte, body string) string {
	n := len(body)
	return string([]byte{typ, byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}) + body
}

// Lines and frames mixed on one stream, read one byte at a time and in
// one go: each comes out whole, in order; a frame over the limit is
// skipped and reported with its type; frame bodies may hold newlines.
func TestFrames(t *testing.T) {
	stream := "{\"a\":1}\n" + frame(1, "x\ny") + frame(2, "") + "\r\n" + frame(3, strings.Repeat("z", 40)) +
		"{\"b\":2}\n" + frame(4, "ok") + strings.Repeat("w", 50) + "\n" + "tail\n"
	want := []string{"0:{\"a\":1}", "1:x\ny", "2:", "0:", "3:too long", "0:{\"b\":2}", "4:ok", "0:too long", "0:tail"}
	for _, rd := range []io.Reader{strings.NewReader(stream), iotest.OneByteReader(strings.NewReader(stream))} {
		l := NewReader(rd, 32, nil)
		l.FrameBelow = 7
		var got []string
		for {
			typ, msg, err := l.NextMsg()
			if err == io.EOF {
				break
			}
			s := string(msg)
			if err == ErrTooLong {
				s = "too long"
			} else if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(rune('0'+typ))+":"+s)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got  %q\nwant %q", got, want)
		}
	}
	// Without FrameBelow the same bytes are lines.
	l := NewReader(strings.NewReader(frame(1, "x\ny")), 64, nil)
	if line, err := l.Next(); err != nil || line[0] != 1 {
		t.Fatalf("%q %v", line, err)
	}
}

// A frame whose header claims more than the limit costs no memory: it is
// skipped as it arrives.
func TestHugeFrameSkipped(t *testing.T) {
	big := frame(1, strings.Repeat("q", 1<<20)) + frame(2, "next")
	l := NewReader(strings.NewReader(big), 1024, nil)
	l.FrameBelow = 7
	if typ, _, err := l.NextMsg(); typ != 1 || err != ErrTooLong {
		t.Fatalf("%d %v", typ, err)
	}
	if typ, msg, err := l.NextMsg(); typ != 2 || string(msg) != "next" || err != nil {
		t.Fatalf("%d %q %v", typ, msg, err)
	}
	if len(l.buf) > 64<<10 {
		t.Fatalf("buffer grew to %d bytes for a skipped frame", len(l.buf))
	}
}

// A buffer grown past the pooled sizes for a long line, and the pooled
// ones before it, are handled on a socket as on any stream.
func TestGrowPastPooled(t *testing.T) {
	long := strings.Repeat("y", 200<<10)
	in := "a\n" + long + "\nb\n" + long + "\n"
	got, tooLong := readAll(t, iotest.HalfReader(strings.NewReader(in)), 1<<20)
	if len(got) != 4 || got[1] != long || got[2] != "b" || tooLong != 0 {
		t.Fatalf("%d lines, %d too long", len(got), tooLong)
	}
}

// TestBulkBuffer: a stream of large messages lets the buffer grow past
// maxReadBuf, to bulkReadBuf and no further, and only as far as the limit
// allows; after keepLong short lines it goes back to at most maxReadBuf.
func TestBulkBuffer(t *testing.T) {
	msg := strings.Repeat("x", 16<<10) + "\n"
	short := strings.Repeat("y", 100) + "\n"
	for _, tc := range []struct {
		max, want int
	}{
		{1 << 20, bulkReadBuf},
		{100 << 10, 128 << 10}, // a 100 KiB limit: the buffer stays under twice that
		{20 << 10, maxReadBuf},
	} {
		in := strings.Repeat(msg, 100) + strings.Repeat(short, 2*keepLong) + strings.Repeat(short, 1000)
		lr := NewReader(strings.NewReader(in), tc.max, nil)
		biggest := 0
		for range 100 {
			line, err := lr.Next()
			if err != nil || len(line) != 16<<10 {
				t.Fatalf("max %d: %d bytes, %v", tc.max, len(line), err)
			}
			biggest = max(biggest, len(lr.buf))
		}
		if biggest != tc.want {
			t.Errorf("max %d: the buffer grew to %d bytes for 16 KiB messages, want %d", tc.max, biggest, tc.want)
		}
		last := 0
		for {
			_, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			last = len(lr.buf)
		}
		if last > maxReadBuf {
			t.Errorf("max %d: after 1,000 short lines the buffer holds %d bytes, want at most %d", tc.max, last, maxReadBuf)
		}
	}
}

// errOnce returns its chunks one read at a time, and err between the
// first and the second.
type errOnce struct {
	chunks [][]byte
	err    error
	failed bool
}

func (e *errOnce) Read(p []byte) (int, error) {
	if len(e.chunks) == 0 {
		return 0, io.EOF
	}
	if len(e.chunks) == 1 && !e.failed {
		e.failed = true
		return 0, e.err
	}
	n := copy(p, e.chunks[0])
	e.chunks = e.chunks[1:]
	return n, nil
}

// A line over the limit that an error (a read deadline) interrupts is
// still skipped to its end when reading goes on: its tail is not a line.
func TestLongLineResumes(t *testing.T) {
	deadline := errors.New("deadline")
	src := &errOnce{chunks: [][]byte{bytes.Repeat([]byte("x"), 3000), []byte("tail\nnext\n")}, err: deadline}
	l := NewReader(src, 1024, nil)
	if _, err := l.Next(); err != deadline {
		t.Fatalf("first Next: %v, want the read's error", err)
	}
	if _, err := l.Next(); err != ErrTooLong {
		t.Fatalf("second Next: %v, want ErrTooLong", err)
	}
	if line, err := l.Next(); err != nil || string(line) != "next" {
		t.Fatalf("third Next: %q, %v; want next", line, err)
	}
}
