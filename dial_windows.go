package statebus

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

// dialPipe connects to the service's named pipe (\\.\pipe\NAME), waiting
// while every instance of the pipe is busy until ctx ends.
func dialPipe(ctx context.Context, path string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, path)
}
