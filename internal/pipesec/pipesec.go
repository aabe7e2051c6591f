// Package pipesec owns who may open statebusd's named pipe on Windows:
// the MessageBus:PipeSecurity setting and the security descriptor (SDDL)
// it stands for. The setting is one of
//
//   - "owner" (the default): SYSTEM, the Administrators group and the
//     account statebusd runs as, nobody else;
//   - "interactive": those, plus every user logged on interactively (the
//     INTERACTIVE group, IU), for a service whose clients are desktop
//     programs of whoever is logged on;
//   - a security descriptor in SDDL, starting with "D:" (or "O:", "G:"),
//     used as it is, e.g. "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;S-1-5-21-...-1001)".
//
// Windows checks the descriptor whenever a client opens the pipe; a
// client it refuses gets "Access is denied" and the service never sees
// it. On Unix the setting is accepted and ignored: the socket file's mode
// (SocketMode) and the access rules (MessageBus:Access) decide there.
package pipesec

import (
	"fmt"
	"strings"
)

// The named settings.
const (
	Owner       = "owner"
	Interactive = "interactive"
)

// Check reports whether v is a PipeSecurity value: "" (Owner), one of the
// named settings or an SDDL security descriptor, which on Windows the
// system must parse.
func Check(v string) error {
	switch strings.ToLower(v) {
	case "", Owner, Interactive:
		return nil
	}
	if !isSDDL(v) {
		return fmt.Errorf("config: PipeSecurity %q: want owner, interactive or a security descriptor in SDDL (D:...)", v)
	}
	if err := parse(v); err != nil {
		return fmt.Errorf("config: PipeSecurity %q is not a security descriptor Windows accepts: %w", v, err)
	}
	return nil
}

// SDDL returns the security descriptor for setting v, with account the
// SID of the user statebusd runs as ("" when it cannot be read: then
// OWNER RIGHTS, the pipe's owner, stands in for it). Full access for
// SYSTEM, Administrators and the account; read and write, which is what
// opening the pipe needs, for interactive users when v is Interactive.
// The "P" flag keeps inherited entries out.
func SDDL(v, account string) string {
	switch strings.ToLower(v) {
	case "", Owner, Interactive:
	default:
		return v
	}
	if account == "" {
		account = "OW"
	}
	d := "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;" + account + ")"
	if strings.EqualFold(v, Interactive) {
		d += "(A;;GRGW;;;IU)"
	}
	return d
}

func isSDDL(v string) bool {
	return len(v) > 2 && v[1] == ':' && strings.ContainsRune("DOGS", rune(v[0]))
}
