//go:build linux

package server

import (
	"net"
	"syscall"
)

// peerCred returns the pid, uid and gid of the process at the other end of
// c as the kernel recorded them at connect time (SO_PEERCRED).
func peerCred(nc net.Conn) (pid, uid, gid int) {
	pid, uid, gid = -1, -1, -1
	c, ok := nc.(*net.UnixConn)
	if !ok {
		return
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		if err == nil {
			pid, uid, gid = int(cred.Pid), int(cred.Uid), int(cred.Gid)
		}
	})
	return
}

// peerSID: users are uids here.
func peerSID(pid int) string { return "" }
