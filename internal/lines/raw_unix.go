//go:build unix

package lines

import (
	"io"
	"os"
	"syscall"
)

// rawConn reads a socket through its syscall.RawConn: the reader waits
// for input in the runtime's poller holding no buffer, and takes one only
// when a read would return data.
type rawConn struct {
	rc  syscall.RawConn
	l   *Reader
	try func(fd uintptr) bool // l.raw.tryRead, made once: no allocation per read
	n   int
	err error
}

// newRaw returns a rawConn for rd when it is a socket, else nil.
func newRaw(rd io.Reader, l *Reader) *rawConn {
	sc, ok := rd.(syscall.Conn)
	if !ok {
		return nil
	}
	if _, file := rd.(*os.File); file {
		return nil // a pipe or file: its reads may block
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &rawConn{rc: rc, l: l}
	p.try = p.tryRead
	return p
}

// read waits until the socket has input (or an error), then reads it.
func (p *rawConn) read() (int, error) {
	p.n, p.err = 0, nil
	if err := p.rc.Read(p.try); err != nil {
		return 0, err
	}
	return p.n, p.err
}

// tryRead reads what is there; with nothing to read it gives back an
// empty buffer and asks the poller to wait.
func (p *rawConn) tryRead(fd uintptr) bool {
	l := p.l
	if l.buf == nil {
		l.take()
	}
	for {
		n, err := syscall.Read(int(fd), l.buf[l.w:])
		switch err {
		case nil:
			if n == 0 && len(l.buf) > l.w {
				p.err = io.EOF
			}
			p.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if l.w == 0 {
				l.release()
			}
			return false
		default:
			p.err = os.NewSyscallError("read", err)
			return true
		}
	}
}
