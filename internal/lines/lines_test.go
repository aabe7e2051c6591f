package lines

import (
	"bytes"
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
