package statebus

import "golang.org/x/sys/unix"

// sockPeerUID reads SO_PEERCRED of a connected Unix socket.
func sockPeerUID(fd int) (int, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, err
	}
	return int(cred.Uid), nil
}
