package server

import (
	"fmt"
	"net"
	"os"

	"github.com/Microsoft/go-winio"

	"github.com/statebus/statebus/internal/pipesec"
)

// Listen creates the named pipe at path (\\.\pipe\NAME) that SYSTEM,
// Administrators and the account statebusd runs as may open
// (pipesec.Owner); mode, a Unix socket's file mode, does not apply. A
// name already served by another process is an error naming it.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	return listenPipe(path, pipesec.Owner)
}

// listen is Listen for c: its pipe, with the security descriptor its
// PipeSecurity stands for.
func listen(c *Config) (net.Listener, error) { return listenPipe(c.SocketPath, c.PipeSecurity) }

func listenPipe(path, security string) (net.Listener, error) {
	ln, err := winio.ListenPipe(path, &winio.PipeConfig{
		SecurityDescriptor: pipesec.Descriptor(security),
		InputBufferSize:    64 << 10,
		OutputBufferSize:   64 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w (is another statebusd already serving it?)", path, err)
	}
	return ln, nil
}

// removeSocket does nothing: a named pipe goes away with its last handle.
func removeSocket(path string, fi os.FileInfo) {}
