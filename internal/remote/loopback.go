package remote

import (
	"fmt"
	"net"
	"net/netip"
)

// IsLoopback reports whether hostport is an IP literal on loopback
// (127.0.0.0/8 or ::1) with a port: the only addresses plain TCP is
// served on, and dialled. A host name is not accepted: what it resolves
// to could change.
func IsLoopback(hostport string) error {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return fmt.Errorf("%q is not an IP address and port such as 127.0.0.1:9557 (%v)", hostport, err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("%s is not a loopback address: plain TCP carries events and identities unencrypted and unauthenticated, so only 127.0.0.1 or [::1] are allowed", ap.Addr())
	}
	return nil
}

// PeerUID returns the user id that owns the socket at the other end of a
// loopback TCP connection, as the kernel records it: for a server, the
// client process's user; for a client, the server's. ok is false where
// the system cannot say; then the peer is not known.
func PeerUID(nc net.Conn) (uid int, ok bool, err error) {
	local, lok := nc.LocalAddr().(*net.TCPAddr)
	remote, rok := nc.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok {
		return 0, false, nil
	}
	// The peer's socket is the one whose local address is our remote one
	// and whose remote address is our local one.
	return socketUID(remote.AddrPort(), local.AddrPort())
}
