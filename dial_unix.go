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
