// Package systemd is the little of systemd's service protocol statebusd
// speaks: readiness and watchdog notifications over $NOTIFY_SOCKET
// (sd_notify(3)) and sockets passed by socket activation
// (sd_listen_fds(3)). Both are a few lines over plain sockets, written
// here against an injected getenv so that the daemon's in-process tests
// can run side by side; coreos/go-systemd reads the process environment.
package systemd

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends state changes to the service manager. A Notifier made
// without $NOTIFY_SOCKET, or nil, does nothing: outside systemd it costs
// nothing to call.
type Notifier struct {
	addr *net.UnixAddr
}

// NewNotifier returns the notifier for $NOTIFY_SOCKET as getenv reports
// it, or nil when it is unset. An abstract socket ("@name") is supported.
func NewNotifier(getenv func(string) string) *Notifier {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// ErrUnsupportedSocket is returned for NOTIFY_SOCKET addresses other than
// a Unix datagram socket path or abstract name (for example vsock:).
var ErrUnsupportedSocket = errors.New("systemd: NOTIFY_SOCKET is not a Unix socket")

// Notify sends state, newline-separated assignments such as "READY=1" or
// "STATUS=serving", in one datagram.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	if name := n.addr.Name; name[0] != '/' && name[0] != '@' {
		return ErrUnsupportedSocket
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or 0 when the
// watchdog is off or meant for another process ($WATCHDOG_PID).
func WatchdogInterval(getenv func(string) string, pid int) time.Duration {
	usec, err := strconv.ParseInt(strings.TrimSpace(getenv("WATCHDOG_USEC")), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
