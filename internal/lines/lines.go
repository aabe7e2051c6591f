// Package lines splits a byte stream into lines without copying them: the
// read side of every statebus connection, on the service and in clients.
package lines

import (
	"bytes"
	"encoding/binary"
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
	// FrameBelow, when not 0, makes NextMsg also return frames: a message
	// whose first byte is below it, but not 0, is a frame, that byte its type, then
	// its body's length (little-endian uint32) and the body (see
	// protocol.FrameSend).
	FrameBelow byte
	skip       int64 // bytes of a frame over the limit still to skip
}

// frameHeader is a frame's type and length.
const frameHeader = 5

// NewReader returns a Reader of rd for lines of at most max bytes. onRead,
// if not nil, is called after every read that returned data.
func NewReader(rd io.Reader, max int, onRead func(n int)) *Reader {
	return &Reader{rd: rd, max: max, onRead: onRead}
}

// Next returns the next line without its "\n" or "\r\n". The line is valid
// until the next call.
func (l *Reader) Next() ([]byte, error) {
	_, line, err := l.NextMsg()
	return line, err
}

// NextMsg returns the next line (typ 0) or, with FrameBelow set, the next
// frame's type and body. What it returns is valid until the next call. A
// frame longer than the limit is skipped, reported as ErrTooLong with its
// type.
func (l *Reader) NextMsg() (typ byte, msg []byte, err error) {
	discarding := false
	for {
		need := 0 // bytes the next frame needs in the buffer
		if l.skip > 0 {
			n := min(l.skip, int64(l.w-l.r))
			l.r += int(n)
			l.skip -= n
			if l.skip > 0 {
				l.r, l.w = 0, 0
			}
		}
		if l.skip == 0 && l.r < l.w && l.buf[l.r] != 0 && l.buf[l.r] < l.FrameBelow && !discarding {
			if avail := l.w - l.r; avail >= frameHeader {
				typ = l.buf[l.r]
				n := int64(binary.LittleEndian.Uint32(l.buf[l.r+1:]))
				if n > int64(l.max) {
					l.skip = frameHeader + n
					return typ, nil, ErrTooLong
				}
				if end := frameHeader + int(n); avail >= end {
					msg = l.buf[l.r+frameHeader : l.r+end : l.r+end]
					l.r += end
					l.noteLen(len(msg))
					return typ, msg, nil
				} else {
					need = end
				}
			} else {
				need = frameHeader
			}
		} else if l.skip == 0 {
			if i := bytes.IndexByte(l.buf[l.r:l.w], '\n'); i >= 0 {
				line := l.buf[l.r : l.r+i]
				l.r += i + 1
				if discarding || len(line) > l.max {
					return 0, nil, ErrTooLong
				}
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line = line[:n-1]
				}
				l.noteLen(len(line))
				return 0, line, nil
			}
			if discarding {
				l.r, l.w = 0, 0
			} else if l.w-l.r > l.max {
				discarding = true
				l.r, l.w = 0, 0
			}
		}
		if l.r > 0 {
			l.w = copy(l.buf, l.buf[l.r:l.w])
			l.r = 0
		}
		switch {
		case need > len(l.buf):
			nb := make([]byte, max(need, min(2*len(l.buf), maxReadBuf), minReadBuf))
			copy(nb, l.buf[:l.w])
			l.buf = nb
		case l.w == len(l.buf) || l.full && len(l.buf) < maxReadBuf:
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
		case l.w == 0 && len(l.buf) > maxReadBuf && l.long == 0:
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
			return 0, nil, err
		}
	}
}

// noteLen counts a long message, so its buffer is kept for the next few.
func (l *Reader) noteLen(n int) {
	if n > maxReadBuf/2 {
		l.long = keepLong
	} else if l.long > 0 {
		l.long--
	}
}
