package statebus

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/Microsoft/go-winio"
)

// dialPipe connects to the service's named pipe (\\.\pipe\NAME), waiting
// while every instance of the pipe is busy until ctx ends.
func dialPipe(ctx context.Context, path string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, path)
}

// checkServer does not check on Windows: who may create the pipe is up to
// its ACL (a pipe name is not a file in a world-writable directory), and
// WithServerUID and STATEBUS_SERVER_UID are ignored.
func checkServer(net.Conn, string, []int) error { return nil }

// closeFrees reports whether closing nc frees the client's ids for a
// new connection at once (dial_unix.go). A named pipe's server cannot
// tell that its client hung up before it reads the end, so Close waits
// for the answer to its Unregister there; TCP and TLS connections go to
// a statebusd that can.
func closeFrees(nc net.Conn) bool {
	switch nc.(type) {
	case *net.TCPConn, *tls.Conn:
		return true
	}
	return false
}
