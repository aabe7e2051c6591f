package server

import (
	"net"

	"golang.org/x/sys/windows"
)

// peerCred returns the process id of a named pipe's client as Windows
// recorded it when the client opened the pipe
// (GetNamedPipeClientProcessId); Windows has no uids or gids, so they read
// as unknown (-1), as does the pid of a connection that is not a pipe.
func peerCred(nc net.Conn) (pid, uid, gid int) {
	pid, uid, gid = -1, -1, -1
	f, ok := nc.(interface{ Fd() uintptr })
	if !ok {
		return
	}
	var p uint32
	if windows.GetNamedPipeClientProcessId(windows.Handle(f.Fd()), &p) == nil {
		pid = int(p)
	}
	return
}

// peerSID returns the user SID ("S-1-5-21-...") of process pid's token,
// or "" when the service may not read it (another user's process and a
// service account without the right) or pid is unknown. The client
// library dials at the anonymous impersonation level, so the SID comes
// from the process rather than from impersonating the pipe's client.
func peerSID(pid int) string {
	if pid <= 0 {
		return ""
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return ""
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err != nil {
		return ""
	}
	defer tok.Close()
	u, err := tok.GetTokenUser()
	if err != nil {
		return ""
	}
	return u.User.Sid.String()
}
