package protocol

import "strconv"

// Request is one decoded request line. Its byte slices point into the line
// it was decoded from and are valid only as long as that line is.
type Request struct {
	// Type is the request kind. TypeText is the Type exactly as sent (for
	// the "Unknown message type" text).
	Type     MessageType
	TypeText []byte
	// Payload is the raw payload value, nil when absent or null. It holds
	// no raw line break (see canonical.go): its raw '\r' and '\n' have
	// been replaced by spaces in the line, and raw U+0085, U+2028 and
	// U+2029 escaped (then Payload is a copy, valid until the next decode).
	Payload []byte
	// ID is the raw "Id" value (a JSON number or string), nil when absent.
	ID []byte
	// NoAck (a statebus extension, "NoAck":true) asks for no
	// acknowledgement of a delivered event; errors are still sent.
	NoAck bool
	// IsRequest ("Request":true) makes a SendEvent a request: the target's
	// Reply is routed back as the response. TimeoutMs is how long the
	// caller waits (0: no deadline).
	IsRequest bool
	TimeoutMs int64
	// Priority ("Priority":"High"|"Normal"|"Low", a statebus extension)
	// orders the event in its target's queue; Normal when absent.
	Priority Priority
	// Event holds the event fields of an object Payload, read in the same
	// pass as the request; see EventErr.
	Event Event
	// eventErr is why Payload is not a usable event, if it is not.
	eventErr error
	// buf holds Payload when it had to be copied, reused across decodes
	// up to maxKeptBuf.
	buf []byte
	// Framed says the request came as a frame (compact framing, see
	// frame.go): Payload is then nil, Event holds the event, and NumID is
	// the Id (0: none), also in ID as its digits (in idBuf).
	Framed bool
	NumID  uint64
	idBuf  [20]byte
}

// maxKeptBuf is the most a Request keeps between decodes for copies.
const maxKeptBuf = 64 << 10

// EventErr returns nil when the request's Payload is a usable event
// object (r.Event then holds its fields), else the error to send.
func (r *Request) EventErr() error {
	if r.Payload == nil && !r.Framed {
		return ErrPayloadNull.New("")
	}
	return r.eventErr
}

// DecodeRequest decodes a request line (without its line ending). Even when
// it fails, r.ID is set if the line had a usable Id, so the error can be
// matched to the request. It may rewrite line in place: its raw '\r' and
// '\n' (white space between tokens) become spaces.
func DecodeRequest(line []byte, r *Request) error {
	buf := r.buf
	if cap(buf) > maxKeptBuf {
		buf = nil // a long payload came and went: let its copy go
	}
	*r = Request{Type: -1, Priority: Normal, buf: buf}
	s := scanner{blank: true}
	var it objectIter
	if err := scanObject(&s, &it, line); err != nil {
		return err
	}
	var typ []byte
	var typKind byte
	priErr := false
	for it.nextKey(&s) {
		if it.is("Payload") && s.pos < len(line) && line[s.pos] == '{' {
			// Read the event's fields in this pass: the router needs them
			// and the payload is scanned only once.
			start := s.pos
			r.eventErr = eventMembers(&s, &r.Event)
			if s.err != nil {
				break
			}
			r.Payload = line[start:s.pos]
			continue
		}
		if !it.skipValue(&s) {
			break
		}
		switch string(it.Key) {
		case "Type":
			typ, typKind = it.raw(&s), it.Kind
		case "Payload":
			r.Payload = it.raw(&s)
			r.Event, r.eventErr = Event{}, errNotEvent
		case "Id":
			if it.Kind == '"' || it.Kind == '-' || (it.Kind >= '0' && it.Kind <= '9') {
				r.ID = it.raw(&s)
			}
		case "NoAck":
			r.NoAck = it.Kind == 't'
		case "Request":
			r.IsRequest = it.Kind == 't'
		case "TimeoutMs":
			r.TimeoutMs, _ = strconv.ParseInt(string(it.raw(&s)), 10, 64)
		case "Priority":
			if r.Priority = priorityOf(it.raw(&s)); r.Priority == badPriority {
				priErr = true
			}
		}
	}
	if err := s.finish(); err != nil {
		r.ID = nil
		return err
	}
	if len(r.Payload) == 4 && string(r.Payload) == "null" {
		r.Payload = nil
	}
	if s.seps {
		r.escapeSeps()
	}
	if priErr {
		return errPriority
	}
	switch typKind {
	case 0:
		return Required("Type")
	case '"':
		name, err := stringValue(typ)
		if err != nil {
			return err
		}
		r.TypeText = []byte(name)
		for t, n := range typeNames {
			if n == name {
				r.Type = t
				return nil
			}
		}
		return ErrUnknownType.New(name)
	default:
		r.TypeText = typ
		n, err := strconv.Atoi(string(typ))
		if err == nil && n >= 0 && n <= int(Subscribe) {
			r.Type = MessageType(n) // the common case, without a map lookup
			return nil
		}
		if _, ok := typeNames[MessageType(n)]; err != nil || !ok {
			return ErrUnknownType.New(string(typ))
		}
		r.Type = MessageType(n)
		return nil
	}
}

// escapeSeps escapes the raw U+0085, U+2028 and U+2029 the scanner found
// in what the service forwards, the payload, and what it echoes, the Id.
func (r *Request) escapeSeps() {
	if r.ID != nil {
		r.ID = escapeSeps(r.ID, nil)
	}
	if r.Payload == nil || !hasSep(r.Payload) {
		return
	}
	r.buf = appendEscapedSeps(r.buf[:0], r.Payload)
	r.Payload = r.buf
	if r.Payload[0] == '{' {
		// Point Event's slices into the copy; the values are the same.
		s := scanner{data: r.Payload}
		r.eventErr = eventMembers(&s, &r.Event)
	}
}

// MachineIDPayload decodes the payload of Unregister and Subscribe: a JSON
// string holding a machine id.
func MachineIDPayload(payload []byte) ([]byte, error) {
	if payload == nil {
		return nil, ErrPayloadNull.New("")
	}
	if payload[0] != '"' {
		return nil, Required("Payload (a machine id string)")
	}
	id, err := stringValue(payload)
	if err != nil {
		return nil, err
	}
	b := []byte(id)
	if err := ValidateID(b); err != nil {
		return nil, err
	}
	return b, nil
}

// Registration is the payload of a Register request.
type Registration struct {
	MachineID   []byte
	ProcessName string
	ProcessID   int64
	// RegisteredAt is the raw value the client claimed, if any.
	RegisteredAt []byte
	// Durable ("Durable":true, a statebus extension) declares the id's
	// mailbox durable (see docs/durability.md).
	Durable bool
	// Framing ("Framing":"compact/1", a statebus extension) asks for the
	// compact framing (frame.go); "" when absent or not a string.
	Framing string
}

// DecodeRegistration decodes a Register payload.
func DecodeRegistration(payload []byte, reg *Registration) error {
	*reg = Registration{}
	var s scanner
	var it objectIter
	if err := payloadObject(&s, &it, payload, "a registration object"); err != nil {
		return err
	}
	for it.next(&s) {
		switch {
		case it.is("MachineId"):
			if it.Kind != '"' {
				return Required("MachineId")
			}
			v, err := stringValue(it.raw(&s))
			if err != nil {
				return err
			}
			reg.MachineID = []byte(v)
		case it.is("ProcessName"):
			if it.Kind == '"' {
				reg.ProcessName, _ = stringValue(it.raw(&s))
			}
		case it.is("ProcessId"):
			reg.ProcessID, _ = strconv.ParseInt(string(it.raw(&s)), 10, 64)
		case it.is("RegisteredAt"):
			reg.RegisteredAt = it.raw(&s)
		case it.is("Durable"):
			reg.Durable = it.Kind == 't'
		case it.is("Framing"):
			if it.Kind == '"' {
				reg.Framing, _ = stringValue(it.raw(&s))
			}
		}
	}
	if err := s.finish(); err != nil {
		return err
	}
	if reg.MachineID == nil {
		return Required("MachineId")
	}
	return ValidateID(reg.MachineID)
}

// Event holds the fields of an event object. The router needs only Source,
// Target and Name; clients also read Payload and Timestamp. Slices point
// into the decoded bytes (ids and names are copied only when they contain
// escapes).
type Event struct {
	Source    []byte
	Target    []byte
	Name      []byte
	Payload   []byte // raw JSON value, nil when absent or null
	Timestamp []byte // raw JSON value, nil when absent
	// TraceParent and TraceState are the W3C trace context the sender
	// attached ("traceparent", "tracestate": the trace context
	// extension), nil when absent or not a string. They are not checked
	// here: whoever uses them parses them strictly.
	TraceParent, TraceState []byte
}

// DecodeEvent decodes an event object: the payload of SendEvent, and the
// Data of a delivery. It checks that the three names are present strings.
func DecodeEvent(data []byte, ev *Event) error {
	*ev = Event{}
	if data == nil {
		return ErrPayloadNull.New("")
	}
	var s scanner
	s.data = data
	s.skipSpace()
	if s.pos >= len(data) || data[s.pos] != '{' {
		var it objectIter
		if err := scanObject(&s, &it, data); err != nil && err != ErrNotObject {
			return err
		}
		return errNotEvent
	}
	err := eventMembers(&s, ev)
	if ferr := s.finish(); ferr != nil {
		return ferr
	}
	return err
}

// eventMembers reads the event object at s.pos into ev and leaves s after
// it. A scanning error is in s.err; the returned error says whether the
// fields make an event: its envelope keys (eventKeys) present once each,
// written exactly, and no key that another reader could fold onto one.
func eventMembers(s *scanner, ev *Event) error {
	*ev = Event{}
	var it objectIter
	if !it.begin(s) {
		return s.err
	}
	var seen uint8 // a bit per envelope key
	var amb error
	for it.next(s) {
		var dst *[]byte
		var bit uint8
		switch string(it.Key) { // a switch on the conversion allocates nothing
		case "SourceMachineId":
			dst, bit = &ev.Source, 1
		case "TargetMachineId":
			dst, bit = &ev.Target, 2
		case "EventName":
			dst, bit = &ev.Name, 4
		case "Payload":
			ev.Payload, bit = it.raw(s), 8
		case "Timestamp":
			ev.Timestamp, bit = it.raw(s), 16
		case "traceparent", "tracestate":
			if it.Kind == '"' && !it.Escaped {
				if v := it.raw(s); !hasEscape(v[1 : len(v)-1]) {
					if it.Key[5] == 'p' {
						ev.TraceParent = v[1 : len(v)-1]
					} else {
						ev.TraceState = v[1 : len(v)-1]
					}
				}
			}
			continue
		default:
			if mayFold(it.Key) && amb == nil {
				if name := foldKey(it.Key); name != "" {
					amb = errAmbiguous(it.RawKey, name)
				}
			}
			continue
		}
		if (seen&bit != 0 || it.Escaped) && amb == nil {
			amb = errAmbiguous(it.RawKey, string(it.Key))
		}
		seen |= bit
		if dst == nil {
			continue
		}
		if it.Kind != '"' {
			*dst = nil // wrong type counts as missing
			continue
		}
		raw := it.raw(s)
		v := raw[1 : len(raw)-1]
		if hasEscape(v) {
			u, err := stringValue(raw)
			if err != nil {
				s.fail(err)
				return err
			}
			v = []byte(u)
		}
		*dst = v
	}
	if s.err != nil {
		return s.err
	}
	if len(ev.Payload) == 4 && string(ev.Payload) == "null" {
		ev.Payload = nil
	}
	switch {
	case amb != nil:
		return amb
	case ev.Source == nil:
		return errNoSource
	case ev.Target == nil:
		return errNoTarget
	case len(ev.Name) == 0:
		return errNoName
	}
	return nil
}

// Preallocated: clients decode every acknowledgement as a possible event.
var (
	errNoSource = Required("SourceMachineId")
	errNoTarget = Required("TargetMachineId")
	errNoName   = Required("EventName")
	errNotEvent = Required("Payload (an event object)")
)

func hasEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// Response is one decoded line from the service.
type Response struct {
	Success bool
	// Data is the raw Data value, nil when absent or null.
	Data []byte
	// Error is the error text, "" when none.
	Error string
	// ID is the raw "Id" echoed from the request, nil when absent.
	ID []byte
	// IsEvent says Data is an event object (a delivery); Event then holds
	// its fields, read in the same pass.
	IsEvent bool
	Event   Event
	// ReplyTo is set on the delivery of a request: the token to reply
	// with. Deadline is the raw deadline timestamp, nil when none.
	ReplyTo  uint64
	Deadline []byte
	// Watch is set on a copy of an event sent by a Watch filter: the
	// filter's WatchId.
	Watch uint64
	// For is the raw "For" string (quotes included), nil when absent: on
	// a connection that holds several ids, the one a delivery is for.
	For []byte
	// Sequence and Mailbox are set on the delivery of a durable
	// mailbox's event; Rewound on the first one handed over again after
	// a refusal.
	Sequence uint64
	Mailbox  []byte
	Rewound  bool
	// Framed says the response came as a frame (DecodeFrame). Then NumID
	// is its Id (0: none) and ID is nil; ForID is For without quotes;
	// Time is the event's timestamp and DeadlineNs a request's deadline
	// (unix nanoseconds, 0: none); an acknowledgement has Recipients (-1:
	// not a fan-out) and its target in AckTarget.
	Framed     bool
	NumID      uint64
	ForID      []byte
	Time       int64
	DeadlineNs int64
	Recipients int
	AckTarget  []byte
}

// DecodeResponse decodes a line the service wrote.
func DecodeResponse(line []byte, r *Response) error {
	*r = Response{}
	var s scanner
	var it objectIter
	if err := scanObject(&s, &it, line); err != nil {
		return err
	}
	for it.nextKey(&s) {
		if it.is("Data") && s.pos < len(line) && line[s.pos] == '{' {
			start := s.pos
			r.IsEvent = eventMembers(&s, &r.Event) == nil
			if s.err != nil {
				break
			}
			r.Data = line[start:s.pos]
			continue
		}
		if !it.skipValue(&s) {
			break
		}
		switch string(it.Key) {
		case "Success":
			r.Success = it.Kind == 't'
		case "Data":
			r.Data, r.IsEvent = nil, false
			if it.Kind != 'n' {
				r.Data = it.raw(&s)
			}
		case "Error":
			if it.Kind == '"' {
				r.Error, _ = stringValue(it.raw(&s))
			}
		case "Id":
			r.ID = it.raw(&s)
		case "ReplyTo":
			r.ReplyTo, _ = strconv.ParseUint(string(it.raw(&s)), 10, 64)
		case "Watch":
			r.Watch, _ = strconv.ParseUint(string(it.raw(&s)), 10, 64)
		case "Sequence":
			r.Sequence, _ = strconv.ParseUint(string(it.raw(&s)), 10, 64)
		case "Mailbox":
			if it.Kind == '"' {
				r.Mailbox = it.raw(&s)
			}
		case "Rewound":
			r.Rewound = it.Kind == 't'
		case "Deadline":
			if it.Kind == '"' {
				r.Deadline = it.raw(&s)
			}
		case "For":
			if it.Kind == '"' {
				r.For = it.raw(&s)
			}
		}
	}
	return s.finish()
}

// Field returns the raw value of the top-level member name of the JSON
// object data, or nil when data is not an object or has no such member.
func Field(data []byte, name string) []byte {
	var s scanner
	var it objectIter
	if scanObject(&s, &it, data) != nil {
		return nil
	}
	var v []byte
	for it.next(&s) {
		if it.is(name) {
			v = it.raw(&s)
		}
	}
	if s.finish() != nil {
		return nil
	}
	return v
}

// ReplyPayload is the payload of a Reply request.
type ReplyPayload struct {
	ReplyTo uint64
	// Payload is the raw reply value (nil for null); Error, when not empty,
	// makes the reply an error.
	Payload []byte
	Error   string
}

// DecodeReply decodes a Reply payload. Like DecodeRequest it may rewrite
// payload in place, its raw '\r' and '\n' becoming spaces, and escapes raw
// U+0085, U+2028 and U+2029 of rp.Payload in a copy.
func DecodeReply(payload []byte, rp *ReplyPayload) error {
	*rp = ReplyPayload{}
	s := scanner{blank: true}
	var it objectIter
	if err := payloadObject(&s, &it, payload, "a reply object"); err != nil {
		return err
	}
	seen := false
	for it.next(&s) {
		switch {
		case it.is("ReplyTo"):
			n, err := strconv.ParseUint(string(it.raw(&s)), 10, 64)
			seen = err == nil
			rp.ReplyTo = n
		case it.is("Payload"):
			if it.Kind != 'n' {
				rp.Payload = it.raw(&s)
			}
		case it.is("Error"):
			if it.Kind == '"' {
				rp.Error, _ = stringValue(it.raw(&s))
			}
		}
	}
	if err := s.finish(); err != nil {
		return err
	}
	if !seen {
		return Required("ReplyTo")
	}
	if rp.Payload != nil && s.seps {
		rp.Payload = escapeSeps(rp.Payload, nil)
	}
	return nil
}

// GroupPayload is the payload of JoinGroup and LeaveGroup.
type GroupPayload struct {
	Group     string
	MachineID []byte // nil: the connection's only machine id
}

// DecodeGroup decodes a JoinGroup or LeaveGroup payload. A group name
// obeys the machine id alphabet (see ValidateID).
func DecodeGroup(payload []byte, g *GroupPayload) error {
	*g = GroupPayload{}
	var s scanner
	var it objectIter
	if err := payloadObject(&s, &it, payload, "a group object"); err != nil {
		return err
	}
	for it.next(&s) {
		if it.Kind != '"' {
			continue
		}
		v, err := stringValue(it.raw(&s))
		if err != nil {
			return err
		}
		switch {
		case it.is("Group"):
			g.Group = v
		case it.is("MachineId"):
			g.MachineID = []byte(v)
		}
	}
	if err := s.finish(); err != nil {
		return err
	}
	if g.Group == "" || len(g.Group) > MaxIDBytes {
		return Required("Group")
	}
	return checkAlphabet([]byte(g.Group), "group name ")
}

// Priority is an event's place in its target's queue.
type Priority uint8

// The priorities; their values match outq's lanes.
const (
	High Priority = iota
	Normal
	Low
	badPriority
)

var errPriority = ErrMissingField.with("Priority must be \"High\", \"Normal\" or \"Low\"")

func priorityOf(raw []byte) Priority {
	switch string(raw) {
	case `"High"`:
		return High
	case `"Normal"`:
		return Normal
	case `"Low"`:
		return Low
	}
	return badPriority
}

// WatchPayload is the payload of Watch and Unwatch.
type WatchPayload struct {
	EventName, Source, Target string
	WatchID                   uint64
}

// DecodeWatch decodes a Watch or Unwatch payload.
func DecodeWatch(payload []byte, w *WatchPayload) error {
	*w = WatchPayload{}
	var s scanner
	var it objectIter
	if err := payloadObject(&s, &it, payload, "a filter object"); err != nil {
		return err
	}
	for it.next(&s) {
		if it.is("WatchId") {
			w.WatchID, _ = strconv.ParseUint(string(it.raw(&s)), 10, 64)
			continue
		}
		if it.Kind != '"' {
			continue
		}
		v, err := stringValue(it.raw(&s))
		if err != nil {
			return err
		}
		switch {
		case it.is("EventName"):
			w.EventName = v
		case it.is("SourceMachineId"):
			w.Source = v
		case it.is("TargetMachineId"):
			w.Target = v
		}
	}
	return s.finish()
}

// payloadObject starts walking a request's object payload; what names the
// object in the error for anything else.
func payloadObject(s *scanner, it *objectIter, payload []byte, what string) error {
	if payload == nil {
		return ErrPayloadNull.New("")
	}
	if err := scanObject(s, it, payload); err != nil {
		return Required("Payload (" + what + ")")
	}
	return nil
}
