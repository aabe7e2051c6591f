//go:build !windows

package statebus

import (
	"context"
	"net"
)

// dialPipe connects to the service's Unix socket.
func dialPipe(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}
