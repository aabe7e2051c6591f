package remote

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
)

// PeerUIDSupported reports whether PeerUID can tell a loopback peer's
// user on this system.
const PeerUIDSupported = true

// socketUID finds the established TCP socket with local address local
// and remote address remote in /proc/net/tcp (or tcp6) and returns the uid
// the kernel lists for it: the user that created it. It reads the whole
// table, so it costs in proportion to the host's TCP sockets; statebus
// calls it once per plain TCP connection.
func socketUID(local, remote netip.AddrPort) (int, bool, error) {
	files := []string{"/proc/net/tcp6"}
	if local.Addr().Unmap().Is4() {
		files = []string{"/proc/net/tcp", "/proc/net/tcp6"} // tcp6 lists v4 peers of dual-stack sockets
	}
	for _, f := range files {
		v6 := f == "/proc/net/tcp6"
		want := [2][]byte{procAddr(local, v6), procAddr(remote, v6)}
		uid, found, err := scanTable(f, want)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, false, err
		}
		if found {
			return uid, true, nil
		}
	}
	return 0, false, fmt.Errorf("no established TCP socket %v -> %v in /proc/net/tcp: the peer went away", local, remote)
}

// established is the "st" of an established socket in /proc/net/tcp.
var established = []byte("01")

func scanTable(file string, want [2][]byte) (int, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local rem st tx:rx tr:when retrnsmt uid ...
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 8 || !bytes.Equal(fields[1], want[0]) || !bytes.Equal(fields[2], want[1]) ||
			!bytes.Equal(fields[3], established) {
			continue
		}
		uid, err := strconv.Atoi(string(fields[7]))
		if err != nil {
			return 0, false, fmt.Errorf("%s: bad uid %q", file, fields[7])
		}
		return uid, true, nil
	}
	return 0, false, sc.Err()
}

// procAddr writes an address as /proc/net/tcp does: each 32-bit word of
// the address in the machine's byte order, in hex, then ':' and the port
// in hex. For tcp6 an IPv4 address is written as ::ffff:a.b.c.d.
func procAddr(ap netip.AddrPort, v6 bool) []byte {
	a := ap.Addr().Unmap()
	var raw []byte
	if v6 {
		b := a.As16()
		raw = b[:]
	} else {
		b := a.As4()
		raw = b[:]
	}
	out := make([]byte, 0, 2*len(raw)+5)
	for i := 0; i < len(raw); i += 4 {
		out = fmt.Appendf(out, "%08X", binary.NativeEndian.Uint32(raw[i:i+4]))
	}
	return fmt.Appendf(out, ":%04X", ap.Port())
}
