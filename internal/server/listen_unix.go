//go:build unix

package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

var umaskMu sync.Mutex

// Listen creates the Unix socket at path with the given file mode. A stale
// socket file (nothing accepting on it) is replaced; a live one is an
// error naming it, and so is a path that exists but is not a socket.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: remove it or choose another --pipe-name", path)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			// In a shared directory such as /tmp, whoever binds the path
			// first is the bus for every client: never serve beside, or
			// silently replace, another user's socket.
			return nil, fmt.Errorf("%s belongs to uid %d, not to statebusd's uid %d: another user may be impersonating the bus. "+
				"Find who listens there (ss -xlp | grep %s); remove it as root if it is stale, or serve from a directory only statebusd can write, such as /run/statebus (--pipe-name /run/statebus/bus.sock)",
				path, st.Uid, os.Geteuid(), filepath.Base(path))
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("another statebusd is already serving %s", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("cannot tell whether %s is in use (%v): remove it if no statebusd is running", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cannot remove stale socket %s: %w", path, err)
		}
	}
	// Bind with a umask that leaves the socket private, then widen it to
	// mode: no one outside mode can connect in between.
	umaskMu.Lock()
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", path, err)
	}
	// The server removes the socket itself, and only if it is still its own.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("cannot set mode %o on %s: %w", mode, path, err)
	}
	return ln, nil
}

// removeSocket removes path if it is still the socket described by fi, so
// that a stopping server never removes a newer server's socket.
func removeSocket(path string, fi os.FileInfo) {
	if fi == nil {
		return
	}
	if cur, err := os.Lstat(path); err == nil && os.SameFile(cur, fi) {
		os.Remove(path)
	}
}

// listen is Listen for c: its socket path and mode.
func listen(c *Config) (net.Listener, error) { return Listen(c.SocketPath, c.SocketMode) }
