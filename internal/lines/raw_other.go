//go:build !unix

package lines

import "io"

// rawConn is only used on Unix (raw_unix.go).
type rawConn struct{}

func newRaw(io.Reader, *Reader) *rawConn { return nil }

func (*rawConn) read() (int, error) { panic("lines: no raw reads here") }
