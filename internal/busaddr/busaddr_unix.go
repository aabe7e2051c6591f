//go:build !windows

package busaddr

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
)

// Noun is what an address names on this platform.
const Noun = "socket"

// Temp returns a fresh address for a temporary bus and a function that
// removes what it left behind: here a socket path in a new directory only
// this user can enter, kept short because sun_path holds about 108 bytes
// (a test's TempDir can be longer).
func Temp() (addr string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "sb")
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(dir, "bus.sock"), func() { os.RemoveAll(dir) }, nil
}

// Dial connects to the bus at addr without the client library.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", addr)
}

// Gone reports whether nothing is left at addr once its bus stopped: no
// socket file.
func Gone(addr string) bool {
	_, err := os.Lstat(addr)
	return errors.Is(err, os.ErrNotExist)
}
