// Package lines splits a byte stream into lines without copying them: the
// read side of every statebus connection, on the service and in clients.
package lines

import (
	"bytes"
	"errors"
	"io"
)

const (
	minReadBuf = 4 << 10  // what an idle connection holds
	maxReadBuf = 64 << 10 // what a busy one grows to (more reads per syscall)
	keepLong   = 16       // short lines after a long one before its buffer is given back
)

// ErrTooLong is returned by Next for a line over the limit; the line has
// been discarded and the reader is at the start of the next one.
var ErrTooLong = errors.New("lines: line too long")

// Reader splits a stream into lines without copying them. It starts
// small so that idle connections cost little, grows while reads fill it,
// and never holds more than max bytes of one line: longer lines are
// skipped to their end.
type Reader struct {
	rd   io.Reader
	buf  []byte
	r, w int
	max  int
	full bool // the last read filled the buffer: grow for throughput
	// long counts down the lines since the last long one: a buffer grown
	// for long lines is given back only after keepLong short ones, so a
	// stream of long lines does not reallocate it for each.
	long int
	// onRead is called after each read that returned data, with its size.
	onRead func(int)
}

// NewReader returns a Reader of rd for lines of at most max bytes. onRead,
// if not nil, is called after every read that returned data.
func NewReader(rd io.Reader, max int, onRead func(n int)) *Reader {
	return &Reader{rd: rd, max: max, onRead: onRead}
}

// Next returns the next line without its "\n" or "\r\n". The line is valid
// until the next call.
func (l *Reader) Next() ([]byte, error) {
	discarding := false
	for {
		if i := bytes.IndexByte(l.buf[l.r:l.w], '\n'); i >= 0 {
			line := l.buf[l.r : l.r+i]
			l.r += i + 1
			if discarding || len(line) > l.max {
				return nil, ErrTooLong
			}
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) > maxReadBuf/2 {
				l.long = keepLong
			} else if l.long > 0 {
				l.long--
			}
			return line, nil
		}
		if discarding {
			l.r, l.w = 0, 0
		} else if l.w-l.r > l.max {
			discarding = true
			l.r, l.w = 0, 0
		}
		if l.r > 0 {
			l.w = copy(l.buf, l.buf[l.r:l.w])
			l.r = 0
		}
		if l.w == len(l.buf) || l.full && len(l.buf) < maxReadBuf {
			if len(l.buf) == 0 {
				l.buf = make([]byte, minReadBuf)
			} else {
				// Grow for a long line (up to max+1) or for throughput.
				n := min(2*len(l.buf), max(maxReadBuf, l.max+1))
				if n <= len(l.buf) {
					n = len(l.buf) * 2
				}
				nb := make([]byte, n)
				copy(nb, l.buf[:l.w])
				l.buf = nb
			}
		} else if l.w == 0 && len(l.buf) > maxReadBuf && l.long == 0 {
			// Long lines came and went: give the memory back.
			l.buf = make([]byte, minReadBuf)
		}
		n, err := l.rd.Read(l.buf[l.w:])
		l.w += n
		l.full = l.w == len(l.buf)
		if n > 0 && l.onRead != nil {
			l.onRead(n)
		}
		if err != nil {
			if n > 0 {
				continue // deliver what arrived first
			}
			return nil, err
		}
	}
}
