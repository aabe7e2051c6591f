package federation

import (
	"encoding/binary"
	"errors"
)

// Kind is what a message between daemons carries.
type Kind uint8

const (
	// KindEvent is a unicast event for Target, held by the receiver. The
	// receiver answers KindAck once it wrote the event to the target's
	// socket, or KindError.
	KindEvent Kind = iota + 1
	// KindRequest is a request for Target; N is its deadline (unix ms, 0:
	// none). The receiver answers KindReply or KindError.
	KindRequest
	// KindBroadcast is an event for every subscribed machine of the
	// receiver but Source; with Target "@group" for every member of that
	// group. The receiver answers KindCount.
	KindBroadcast
	// KindWatchCopy is a copy of an event for the receiver's watch N.
	KindWatchCopy
	// KindAck, KindError, KindCount and KindReply answer message Seq.
	KindAck
	KindError
	KindCount
	KindReply
)

// Message flags.
const (
	FlagNoAck uint8 = 1 << iota // the sender asked for no acknowledgement
	// FlagGroup: a KindEvent for a member of group Text; when that member
	// cannot take it at once, the receiver gives it to another member of
	// the group it holds, as it would a local "@group" event.
	FlagGroup
)

// Msg is one message between daemons. Payload is the event object as its
// sender wrote it (or a reply's payload), forwarded byte for byte.
type Msg struct {
	Kind     Kind
	Flags    uint8
	Priority uint8
	Seq      uint64 // the sender's number for the answer to refer to
	N        int64  // deadline, watch id or recipient count, by Kind
	From     string // the sending daemon
	Target   string
	Source   string
	Text     string // an error's text
	Payload  []byte
}

const headerLen = 3 + 8 + 8

// maxField bounds each string field; machine ids are far shorter.
const maxField = 1 << 16

// Append encodes m onto b.
func (m *Msg) Append(b []byte) []byte {
	b = append(b, byte(m.Kind), m.Flags, m.Priority)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(m.N))
	for _, s := range [...]string{m.From, m.Target, m.Source, m.Text} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return append(b, m.Payload...)
}

var errShort = errors.New("federation: truncated message")

// Decode parses data into m. Payload aliases data.
func (m *Msg) Decode(data []byte) error {
	if len(data) < headerLen {
		return errShort
	}
	m.Kind, m.Flags, m.Priority = Kind(data[0]), data[1], data[2]
	if m.Kind < KindEvent || m.Kind > KindReply {
		return errors.New("federation: unknown message kind")
	}
	m.Seq = binary.BigEndian.Uint64(data[3:])
	m.N = int64(binary.BigEndian.Uint64(data[11:]))
	data = data[headerLen:]
	for _, f := range [...]*string{&m.From, &m.Target, &m.Source, &m.Text} {
		if len(data) < 4 {
			return errShort
		}
		n := binary.BigEndian.Uint32(data)
		data = data[4:]
		if n > maxField || int(n) > len(data) {
			return errShort
		}
		*f = string(data[:n])
		data = data[n:]
	}
	m.Payload = data
	return nil
}
