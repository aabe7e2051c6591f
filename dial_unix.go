//go:build !windows

package statebus

import (
	"context"
	"fmt"
	"net"
	"slices"
)

// dialPipe connects to the service's Unix socket.
func dialPipe(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// checkServer refuses a connection whose server does not run as one of
// the trusted user ids. Where the kernel cannot say (a Unix without peer
// credentials), it does not check.
func checkServer(nc net.Conn, path string, trusted []int) error {
	uid, ok, err := peerUID(nc)
	switch {
	case err != nil:
		return fmt.Errorf("statebus: cannot tell which user serves %s, so it is not trusted: %w", path, err)
	case !ok || slices.Contains(trusted, uid):
		return nil
	}
	return &UntrustedServerError{Path: path, UID: uid, Trusted: trusted}
}

// closeFrees reports whether closing nc frees the client's ids for a
// new connection at once, so that Close need not wait for the answer to
// an Unregister: statebusd on Linux sees a Unix socket's or a TCP
// connection's peer hang up before it has read the end, and a
// registration of one of its ids waits for the connection to end.
func closeFrees(net.Conn) bool { return true }
