//go:build linux || darwin || freebsd

package statebus

import "net"

// peerUID returns the user id of the process that serves the socket nc is
// connected to: the credentials the kernel recorded for whoever called
// listen (sockPeerUID, per platform).
func peerUID(nc net.Conn) (uid int, ok bool, err error) {
	uc, isUnix := nc.(*net.UnixConn)
	if !isUnix {
		return 0, false, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var cerr error
	if err := raw.Control(func(fd uintptr) { uid, cerr = sockPeerUID(int(fd)) }); err != nil {
		return 0, false, err
	}
	if cerr != nil {
		return 0, false, cerr
	}
	return uid, true, nil
}
