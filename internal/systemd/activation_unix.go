//go:build unix

package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenFDsStart is the first passed descriptor (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// Listeners returns the sockets the service manager passed to process pid
// ($LISTEN_FDS descriptors from fd 3, when $LISTEN_PID is pid), or none.
// The descriptors are marked close-on-exec.
func Listeners(getenv func(string) string, pid int) ([]net.Listener, error) {
	if getenv("LISTEN_PID") != strconv.Itoa(pid) {
		return nil, nil
	}
	n, err := strconv.Atoi(getenv("LISTEN_FDS"))
	if err != nil || n < 1 {
		return nil, nil
	}
	names := strings.Split(getenv("LISTEN_FDNAMES"), ":")
	var lns []net.Listener
	for i := range n {
		fd := listenFDsStart + i
		syscall.CloseOnExec(fd)
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		ln, err := net.FileListener(f)
		f.Close() // FileListener made its own descriptor
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("socket activation: descriptor %d (%s) is not a listening socket: %w", fd, name, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}
