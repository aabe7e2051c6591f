// Package lines splits a byte stream into lines without copying them: the
// read side of every statebus connection, on the service and in clients.
//
// A reader holds a read buffer only while it has bytes to read: on a
// socket (a Unix socket or TCP, not TLS or a named pipe) it waits for
// input without one and gives the empty buffer back to a pool shared by
// every reader, so an idle connection holds no read buffer.
package lines

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
	"sync"
)

const (
	minReadBuf  = 4 << 10   // what a connection takes when input arrives
	maxReadBuf  = 64 << 10  // what a busy one grows to (more reads per syscall)
	bulkReadBuf = 256 << 10 // what one grows to while it receives large messages
	bulkMsg     = 8 << 10   // a message this long or longer is large
	keepLong    = 16        // short lines after a long one before its buffer is given back
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
	bp   *[]byte // buf's pool entry, when buf is a pooled size
	size int     // the buffer size to take when input arrives; 0: minReadBuf
	raw  *rawConn
	r, w int
	max  int
	full bool // the last read filled the buffer: grow for throughput
	// long counts down the lines since the last long one: a buffer grown
	// for long lines is given back only after keepLong short ones, so a
	// stream of long lines does not reallocate it for each.
	long int
	// bulk counts down the messages since the last large one (bulkMsg):
	// while it is not 0 the buffer may grow to bulkReadBuf for
	// throughput (a read then brings several large messages, and fewer
	// partial ones are moved to the buffer's start), never past the
	// line limit's own budget.
	bulk int
	// onRead is called after each read that returned data, with its size.
	onRead func(int)
	// FrameBelow, when not 0, makes NextMsg also return frames: a message
	// whose first byte is below it, but not 0, is a frame, that byte its type, then
	// its body's length (little-endian uint32) and the body (see
	// protocol.FrameSend).
	FrameBelow byte
	skip       int64 // bytes of a frame over the limit still to skip
	// discarding: the line being read is over the limit; its bytes are
	// dropped up to its end. Kept across calls, so a NextMsg that
	// returned an error (a read deadline) can be called again and goes on
	// where it stopped.
	discarding bool
}

// frameHeader is a frame's type and length.
const frameHeader = 5

// NewReader returns a Reader of rd for lines of at most max bytes. onRead,
// if not nil, is called after every read that returned data.
func NewReader(rd io.Reader, max int, onRead func(n int)) *Reader {
	l := &Reader{rd: rd, max: max, onRead: onRead}
	l.raw = newRaw(rd, l)
	return l
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
		if l.skip == 0 && l.r < l.w && l.buf[l.r] != 0 && l.buf[l.r] < l.FrameBelow && !l.discarding {
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
				if l.discarding || len(line) > l.max {
					l.discarding = false
					return 0, nil, ErrTooLong
				}
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line = line[:n-1]
				}
				l.noteLen(len(line))
				return 0, line, nil
			}
			if l.discarding {
				l.r, l.w = 0, 0
			} else if l.w-l.r > l.max {
				l.discarding = true
				l.r, l.w = 0, 0
			}
		}
		if l.r > 0 {
			l.w = copy(l.buf, l.buf[l.r:l.w])
			l.r = 0
		}
		l.makeRoom(need)
		n, err := l.read()
		l.w += n
		l.full = n > 0 && l.w == len(l.buf)
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
	if n >= bulkMsg {
		l.bulk = keepLong
	} else if l.bulk > 0 {
		l.bulk--
	}
}

// readCap is the size the buffer may grow to for throughput: maxReadBuf,
// or bulkReadBuf while large messages arrive (but no more than a line at
// the limit needs).
func (l *Reader) readCap() int {
	if l.bulk > 0 {
		return min(bulkReadBuf, max(maxReadBuf, 1<<bits.Len(uint(l.max))))
	}
	return maxReadBuf
}

// makeRoom gets the buffer ready for the next read: need is what a
// partial frame needs in it.
func (l *Reader) makeRoom(need int) {
	switch {
	case need > len(l.buf):
		l.grow(max(need, min(2*len(l.buf), maxReadBuf), minReadBuf))
	case len(l.buf) == 0:
		if l.raw == nil {
			l.take() // else the read takes one once input is there
		}
	case l.w == len(l.buf) || l.full && len(l.buf) < l.readCap():
		// Grow for a long line (up to max+1) or for throughput.
		n := min(2*len(l.buf), max(l.readCap(), l.max+1))
		if n <= len(l.buf) {
			n = len(l.buf) * 2
		}
		l.grow(n)
	case len(l.buf) > maxReadBuf && l.long == 0 && l.bulk == 0 && need <= maxReadBuf && l.w <= maxReadBuf/2:
		// Long lines or large messages came and went: give the memory
		// back, keeping what the buffer holds of the next message.
		if l.w > 0 {
			l.grow(maxReadBuf)
			return
		}
		l.release()
		l.size = minReadBuf
		if l.raw == nil {
			l.take()
		}
	}
}

// pools hold read buffers of minReadBuf << i bytes: 4 KiB to bulkReadBuf
// (256 KiB).
var pools [7]sync.Pool

// pool returns the pool for buffers of n bytes, nil for other sizes.
func pool(n int) *sync.Pool {
	if n < minReadBuf || n > bulkReadBuf || n&(n-1) != 0 {
		return nil
	}
	return &pools[bits.TrailingZeros(uint(n/minReadBuf))]
}

// take gets a buffer of l.size bytes, from its pool if it has one.
func (l *Reader) take() {
	if l.size == 0 {
		l.size = minReadBuf
	}
	l.bp = nil
	if p := pool(l.size); p != nil {
		if bp, ok := p.Get().(*[]byte); ok {
			l.bp, l.buf = bp, *bp
			return
		}
		l.bp = new([]byte)
	}
	l.buf = make([]byte, l.size)
}

// grow replaces the buffer with one of n bytes that starts with what the
// old one holds.
func (l *Reader) grow(n int) {
	if n <= bulkReadBuf {
		n = 1 << bits.Len(uint(n-1)) // a pooled size
	}
	old, w := l.buf, l.w
	oldBP := l.bp
	l.size = n
	l.take()
	copy(l.buf, old[:w])
	if oldBP != nil {
		*oldBP = old
		pool(len(old)).Put(oldBP)
	}
}

// release gives the buffer back to its pool, or to the collector; the
// next read takes one of l.size bytes (long-line buffers are not kept).
func (l *Reader) release() {
	if l.buf == nil {
		return
	}
	if l.bp != nil {
		*l.bp = l.buf
		pool(len(l.buf)).Put(l.bp)
	} else {
		l.size = maxReadBuf
	}
	l.buf, l.bp = nil, nil
	l.r, l.w = 0, 0
}

// Release gives the read buffer back once the reader is no longer used;
// what Next returned last is no longer valid.
func (l *Reader) Release() { l.release() }

// read reads into the buffer after l.w.
func (l *Reader) read() (int, error) {
	if l.raw != nil {
		return l.raw.read()
	}
	return l.rd.Read(l.buf[l.w:])
}
