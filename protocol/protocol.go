// Package protocol is the XStateNet InterProcess wire protocol as statebus
// speaks it: message types, the JSON lines exchanged, error texts and the
// pipe name to socket path mapping. It does no I/O.
//
// Every line is one JSON object ending in "\n". Requests are
// {"Type":n,"Payload":...} with an optional statebus "Id"; everything the
// service writes is {"Success":b,"Data":...,"Error":...}. See
// docs/protocol.md for the whole specification.
package protocol

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MessageType is the request kind, serialized as a number (the .NET enum)
// or as its name.
type MessageType int

// The request types of the original protocol.
const (
	Register   MessageType = 0
	Unregister MessageType = 1
	SendEvent  MessageType = 2
	Subscribe  MessageType = 3
)

// statebus extensions: request types the .NET clients never send. They
// need no registration, so tools can ask without taking a machine id.
const (
	// Health asks for the service's health status (Data: HealthStatus).
	Health MessageType = 100
	// Machines asks for the registry (Data: an array of MachineInfo).
	Machines MessageType = 101
	// Reply answers a request event (Payload: {"ReplyTo":n,"Payload":...}
	// or {"ReplyTo":n,"Error":"..."}).
	Reply MessageType = 102
	// JoinGroup and LeaveGroup add a machine id of the connection to a
	// group or remove it (Payload: {"Group": name, "MachineId": id}).
	JoinGroup  MessageType = 103
	LeaveGroup MessageType = 104
	// Watch installs a filter (Payload: {"EventName": glob,
	// "SourceMachineId": glob, "TargetMachineId": glob}, each optional);
	// matching events are copied to the connection. Data: {"WatchId": n}.
	Watch MessageType = 105
	// Unwatch removes one (Payload: {"WatchId": n}).
	Unwatch MessageType = 106
)

var typeNames = map[MessageType]string{
	Register: "Register", Unregister: "Unregister", SendEvent: "SendEvent", Subscribe: "Subscribe",
	Health: "Health", Machines: "Machines", Reply: "Reply",
	JoinGroup: "JoinGroup", LeaveGroup: "LeaveGroup", Watch: "Watch", Unwatch: "Unwatch",
}

// String returns the type's name as the .NET enum spells it.
func (t MessageType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}

// HealthStatus is the Data of a Health response: the original's
// GetHealthStatus fields, then statebus's own.
type HealthStatus struct {
	IsHealthy          bool
	ConnectionCount    int
	RegisteredMachines int
	LastActivityAt     time.Time
	StartedAt          time.Time
	UptimeSeconds      float64
	PeakConnections    int
	PeakConnectionsAt  time.Time
	MaxConnections     int
	Version            string
	// ServiceUID and ServicePID are the service's own user and process,
	// so that a client can check them against its socket's peer
	// credentials.
	ServiceUID int `json:"ServiceUid"`
	ServicePID int `json:"ServicePid"`
}

// MachineInfo is one entry of a Machines response.
type MachineInfo struct {
	MachineID   string `json:"MachineId"`
	ProcessName string // as the client claimed it
	ProcessID   int64  `json:"ProcessId"` // as the client claimed it
	PeerPID     int    `json:"PeerPid"`   // from the kernel (SO_PEERCRED); -1 if unknown
	PeerUID     int    `json:"PeerUid"`
	PeerGID     int    `json:"PeerGid"`
	// PeerCert names a client that connected over TLS by its certificate
	// ("CN=..."); PeerAddress is a TCP client's address. Both are left out
	// for clients of the Unix socket.
	PeerCert    string `json:",omitempty"`
	PeerAddress string `json:",omitempty"`
	// PeerSID is, on Windows, the security identifier of the user whose
	// process opened the pipe (PeerPid), where the service may read that
	// process's token; left out elsewhere.
	PeerSID      string `json:"PeerSid,omitempty"`
	RegisteredAt time.Time
	Subscribed   bool
	SubscribedAt *time.Time `json:",omitempty"`
	ConnectionID uint64     `json:"ConnectionId"`
	ConnectedAt  time.Time
	// State is what the machine's connection last set with SetState (an
	// orchestrated machine's current state); absent when never set.
	State string `json:",omitempty"`
	// Daemon and Host say where the id lives when statebusd is a member of
	// a federation (MessageBus:Cluster): the holding daemon's node name
	// and host. Ids on other daemons have ConnectionId 0 and PeerPid -1.
	Daemon string `json:",omitempty"`
	Host   string `json:",omitempty"`
}

// DefaultPipeName is the pipe name the XStateNet service and clients use
// when none is configured.
const DefaultPipeName = "XStateNet.MessageBus"

// Broadcast is the TargetMachineId that addresses every subscribed machine
// but the sender (a statebus extension).
const Broadcast = "*"

// GroupPrefix starts a group target: "@workers" addresses one member of
// the group workers, "@workers:*" all of them (a statebus extension).
const GroupPrefix = '@'

// GroupTarget splits a target into its group name and whether it
// addresses every member; ok is false when target is not a group.
func GroupTarget(target []byte) (group []byte, all, ok bool) {
	if len(target) < 2 || target[0] != GroupPrefix {
		return nil, false, false
	}
	g := target[1:]
	if n := len(g); n > 2 && g[n-2] == ':' && g[n-1] == '*' {
		return g[:n-2], true, true
	}
	return g, false, true
}

// MaxIDBytes is the longest machine id statebus accepts.
const MaxIDBytes = 256

// ValidateID checks a machine id: not empty, at most MaxIDBytes bytes,
// valid UTF-8, free of control characters and of characters that do not
// show (see invisible), so that two ids that look alike are alike. "*" is
// reserved for broadcast and a leading "@" for groups.
func ValidateID(id []byte) error {
	switch {
	case len(id) == 0:
		return ErrInvalidID.with("Invalid machine id: must not be empty")
	case len(id) > MaxIDBytes:
		return ErrInvalidID.with("Invalid machine id: longer than " + strconv.Itoa(MaxIDBytes) + " bytes")
	case string(id) == Broadcast:
		return ErrInvalidID.with("Invalid machine id: \"*\" is reserved for broadcast")
	case id[0] == GroupPrefix:
		return ErrInvalidID.with("Invalid machine id: \"@\" starts a group name")
	case !utf8.Valid(id):
		return ErrInvalidID.with("Invalid machine id: not valid UTF-8")
	}
	return checkAlphabet(id, "")
}

// checkAlphabet checks the characters of a valid UTF-8 id or group name;
// what names a group ("group name ") in the error text.
func checkAlphabet(id []byte, what string) error {
	i := 0
	for i < len(id) && id[i] >= 0x20 && id[i] < 0x7f {
		i++ // printable ASCII, the common case
	}
	for i < len(id) {
		c := id[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return ErrInvalidID.with("Invalid machine id: " + what + "contains control characters")
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(id[i:])
		if invisible(r) {
			return ErrInvalidID.with("Invalid machine id: " + what +
				"contains invisible or bidirectional-control character " + codePoint(r))
		}
		i += n
	}
	return nil
}

// invisible reports whether r, not ASCII, is a character an id must not
// hold because it does not show or changes how its neighbours show: C1
// controls, format characters (zero-width spaces and joiners, the byte
// order mark, bidirectional controls, soft hyphen, tags), line and
// paragraph separators, other default-ignorable code points (fillers,
// combining grapheme joiner), variation selectors and white space other
// than the ASCII space.
func invisible(r rune) bool {
	switch {
	case r < 0xA0:
		return true // C1 controls
	case r > 0xAD && r < 0x34F, r > 0x3164 && r < 0xFE00:
		return false // none in these blocks (Latin, CJK, Hangul syllables ...): skip the tables
	}
	return unicode.In(r, invisibleTables...)
}

var invisibleTables = []*unicode.RangeTable{unicode.Cf, unicode.Zl, unicode.Zp, unicode.Zs,
	unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector}

// codePoint formats r as U+XXXX.
func codePoint(r rune) string {
	h := strconv.FormatUint(uint64(r), 16)
	if len(h) < 4 {
		h = "0000"[len(h):] + h
	}
	return "U+" + strings.ToUpper(h)
}
