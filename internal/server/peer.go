package server

import (
	"strconv"

	"github.com/statebus/statebus/internal/access"
)

// peer returns who is at the other end of c, for the access policy.
func (c *conn) peer() access.Peer {
	return access.Peer{PID: c.pid, UID: c.uid, GID: c.gid, Cert: c.cert}
}

// certName is the name of a TLS peer's certificate, "" for others.
func (c *conn) certName() string {
	if c.cert == nil {
		return ""
	}
	return c.cert.Name
}

// logArgs returns args followed by what a log line says about c's peer:
// its pid and uid (a local peer), its certificate's name (a TLS peer),
// and the address of a TCP peer.
func (c *conn) logArgs(args ...any) []any {
	if c.cert != nil {
		args = append(args, "cert", c.cert.Name)
	} else {
		args = append(args, "pid", c.pid, "uid", c.uid)
	}
	if c.addr != "" {
		args = append(args, "addr", c.addr)
	}
	return args
}

// warnKey is whom a warning about c is rate-limited for: its user or its
// certificate.
func (c *conn) warnKey() string {
	if c.cert != nil {
		return "cert " + c.cert.Name
	}
	return "uid " + strconv.Itoa(c.uid)
}
