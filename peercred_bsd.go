//go:build darwin || freebsd

package statebus

import "golang.org/x/sys/unix"

// sockPeerUID reads LOCAL_PEERCRED of a connected Unix socket.
func sockPeerUID(fd int) (int, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, err
	}
	return int(cred.Uid), nil
}
