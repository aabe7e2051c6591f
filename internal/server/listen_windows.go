package server

import (
	"fmt"
	"net"
	"os"

	"github.com/Microsoft/go-winio"
)

// Listen creates the named pipe at path (\\.\pipe\NAME). The pipe's
// access list follows mode as far as Windows can: SYSTEM, Administrators
// and the service's own account always have full access; if mode grants
// anything to group or others (the default 0660 does), every
// authenticated local user may read and write, as they could connect to
// the Unix socket's group. A name already served by another process is an
// error naming it.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	sddl := "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)"
	if mode&0o066 != 0 {
		sddl += "(A;;GRGW;;;AU)"
	}
	ln, err := winio.ListenPipe(path, &winio.PipeConfig{
		SecurityDescriptor: sddl,
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
