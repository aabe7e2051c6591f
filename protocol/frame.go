package protocol

import (
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"
)

// The compact framing (a statebus extension, "compact/1"): length-prefixed
// binary frames for the messages every event costs, negotiated at
// Register. See docs/protocol.md, "Compact framing".
//
// A frame is a type byte (FrameSend ... FrameResult, all below
// FrameBelow, so never '{', white space or a byte order mark: a reader
// tells a frame from a JSON line by its first byte), the body's length as
// a little-endian uint32, and the body. Strings in a body are a uvarint
// length and the bytes; the last field of every body is "the rest".
// Everything else stays a JSON line, in both directions, on the same
// connection.

// Framing is the name a client asks for in its Register payload
// ("Framing":"compact/1") and the service confirms in the response's Data.
const Framing = "compact/1"

// The frame types.
const (
	// FrameSend: a client's SendEvent. Body: flags (SendNoAck, SendRequest,
	// SendTrace), priority (High 0, Normal 1, Low 2), Id (uvarint, 0:
	// none), TimeoutMs (uvarint, requests only), source, target, event
	// name, traceparent and tracestate (SendTrace only), payload (the
	// rest: one JSON value, empty for null).
	FrameSend byte = 1
	// FrameReply: a client's Reply. Body: flags (ReplyError), the token
	// (ReplyTo), then the rest: the reply's JSON value (empty for null) or
	// the error text.
	FrameReply byte = 2
	// FrameEvent: the service delivers an event. Body: flags
	// (EventRequest, EventTrace, EventFor), timestamp (int64 unix
	// nanoseconds, little-endian; 0: none), token and deadline (uvarint,
	// int64 unix nanoseconds, 0: none; EventRequest only), For
	// (EventFor only), source, target, event name, traceparent and
	// tracestate (EventTrace only), payload (the rest).
	FrameEvent byte = 3
	// FrameAck: the acknowledgement of a SendEvent frame. Body: Id,
	// recipients + 1 (uvarint; 0: not a fan-out), then the target (the
	// rest).
	FrameAck byte = 4
	// FrameError: an error. Body: Id (0: none), flags (ErrorFor), For
	// (ErrorFor only), then the text (the rest).
	FrameError byte = 5
	// FrameResult: the successful response to a request event sent as a
	// frame: Id, then the reply's JSON value (the rest; empty for null).
	FrameResult byte = 6
	// FrameBelow bounds the frame types: a message whose first byte is
	// below it is a frame.
	FrameBelow byte = 7
)

// FrameHeader is the length of a frame's type and length.
const FrameHeader = 5

// Flags of the frames.
const (
	SendNoAck   = 1
	SendRequest = 2
	SendTrace   = 4

	ReplyError = 1

	EventRequest = 1
	EventTrace   = 2
	EventFor     = 4

	ErrorFor = 1
)

// ErrMalformedFrame: a frame's body does not hold what its type says.
var ErrMalformedFrame = &Kind{"Malformed frame: ", "malformed frame"}

// AskFraming adds "Framing":"compact/1" to a Register line (which ends
// in "}}\n"): the client asks for the compact framing.
func AskFraming(line []byte) []byte {
	line = line[:len(line)-3]
	return append(line, `,"Framing":"`+Framing+`"}}`+"\n"...)
}

// beginFrame appends a frame's header with a length to fill in by
// endFrame.
func beginFrame(b []byte, typ byte) ([]byte, int) {
	b = append(b, typ, 0, 0, 0, 0)
	return b, len(b)
}

func endFrame(b []byte, start int) []byte {
	binary.LittleEndian.PutUint32(b[start-4:start], uint32(len(b)-start))
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendSendFrame appends a SendEvent frame; payload is one JSON value
// (nil for null). Its fields are those of AppendSendEvent but the
// timestamp: the service stamps the event when it reads it.
func AppendSendFrame(b []byte, source, target, event string, payload []byte, o SendOptions) []byte {
	b, start := beginFrame(b, FrameSend)
	var flags byte
	if o.NoAck {
		flags |= SendNoAck
	}
	if o.Request {
		flags |= SendRequest
	}
	if o.TraceParent != "" {
		flags |= SendTrace
	}
	pri := Normal
	switch o.Priority {
	case "", "Normal":
	case "High":
		pri = High
	case "Low":
		pri = Low
	default:
		pri = badPriority // the service refuses it, as it does the line
	}
	b = append(b, flags, byte(pri))
	b = binary.AppendUvarint(b, o.ID)
	if o.Request {
		b = binary.AppendUvarint(b, uint64(max(o.TimeoutMs, 0)))
	}
	b = appendStr(b, source)
	b = appendStr(b, target)
	b = appendStr(b, event)
	if o.TraceParent != "" {
		b = appendStr(b, o.TraceParent)
		b = appendStr(b, o.TraceState)
	}
	b = append(b, payload...)
	return endFrame(b, start)
}

// AppendReplyFrame appends a Reply frame: payload (raw JSON, nil for
// null) or, when errText is not empty, an error.
func AppendReplyFrame(b []byte, replyTo uint64, payload []byte, errText string) []byte {
	b, start := beginFrame(b, FrameReply)
	if errText != "" {
		b = append(b, ReplyError)
		b = binary.AppendUvarint(b, replyTo)
		b = append(b, errText...)
	} else {
		b = append(b, 0)
		b = binary.AppendUvarint(b, replyTo)
		b = append(b, payload...)
	}
	return endFrame(b, start)
}

// EventFrame is what the service puts in a FrameEvent.
type EventFrame struct {
	Timestamp int64 // unix nanoseconds; 0: none
	ReplyTo   uint64
	Deadline  int64 // unix nanoseconds; 0: none
	For       string
}

// AppendEventFrame appends the delivery of ev (Source, Target, Name,
// Payload, TraceParent, TraceState) as a frame.
func AppendEventFrame(b []byte, ev *Event, f *EventFrame) []byte {
	b, start := beginFrame(b, FrameEvent)
	var flags byte
	if f.ReplyTo != 0 {
		flags |= EventRequest
	}
	if ev.TraceParent != nil {
		flags |= EventTrace
	}
	if f.For != "" {
		flags |= EventFor
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(f.Timestamp))
	if f.ReplyTo != 0 {
		b = binary.AppendUvarint(b, f.ReplyTo)
		b = binary.LittleEndian.AppendUint64(b, uint64(f.Deadline))
	}
	if f.For != "" {
		b = appendStr(b, f.For)
	}
	b = appendBytes(b, ev.Source)
	b = appendBytes(b, ev.Target)
	b = appendBytes(b, ev.Name)
	if ev.TraceParent != nil {
		b = appendBytes(b, ev.TraceParent)
		b = appendBytes(b, ev.TraceState)
	}
	b = append(b, ev.Payload...)
	return endFrame(b, start)
}

// EventFrameOverhead bounds what AppendEventFrame adds to the lengths of
// the event's fields and For.
const EventFrameOverhead = FrameHeader + 1 + 8 + 10 + 8 + 6*5

// AppendAckFrame appends the acknowledgement of the SendEvent frame id;
// recipients is written only for fan-outs (n >= 0).
func AppendAckFrame(b []byte, id uint64, target string, recipients int) []byte {
	b, start := beginFrame(b, FrameAck)
	b = binary.AppendUvarint(b, id)
	b = binary.AppendUvarint(b, uint64(recipients+1))
	b = append(b, target...)
	return endFrame(b, start)
}

// AppendErrorFrame appends an error for the frame id (0: none); forID,
// when not empty, says which of the connection's ids it concerns.
func AppendErrorFrame(b []byte, id uint64, text, forID string) []byte {
	b, start := beginFrame(b, FrameError)
	b = binary.AppendUvarint(b, id)
	if forID != "" {
		b = append(b, ErrorFor)
		b = appendStr(b, forID)
	} else {
		b = append(b, 0)
	}
	b = append(b, text...)
	return endFrame(b, start)
}

// AppendResultFrame appends the successful response to the request frame
// id: the reply's JSON value (nil for null).
func AppendResultFrame(b []byte, id uint64, data []byte) []byte {
	b, start := beginFrame(b, FrameResult)
	b = binary.AppendUvarint(b, id)
	b = append(b, data...)
	return endFrame(b, start)
}

// frameReader reads a frame body's fields.
type frameReader struct {
	b   []byte
	err error
}

func (f *frameReader) byte(what string) byte {
	if f.err != nil {
		return 0
	}
	if len(f.b) == 0 {
		f.err = ErrMalformedFrame.New("it ends before its " + what)
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *frameReader) uvarint(what string) uint64 {
	return f.uvarintOf(what, "")
}

// uvarintOf reads a uvarint, named what+of in the error: the text is
// made only when there is one.
func (f *frameReader) uvarintOf(what, of string) uint64 {
	if f.err != nil {
		return 0
	}
	if len(f.b) > 0 && f.b[0] < 0x80 {
		v := uint64(f.b[0]) // one byte, the common case
		f.b = f.b[1:]
		return v
	}
	v, n := binary.Uvarint(f.b)
	if n <= 0 {
		f.err = ErrMalformedFrame.New("its " + what + of + " is not a valid uvarint")
		return 0
	}
	f.b = f.b[n:]
	return v
}

func (f *frameReader) int64(what string) int64 {
	if f.err != nil {
		return 0
	}
	if len(f.b) < 8 {
		f.err = ErrMalformedFrame.New("it ends before its " + what)
		return 0
	}
	v := int64(binary.LittleEndian.Uint64(f.b))
	f.b = f.b[8:]
	return v
}

func (f *frameReader) str(what string) []byte {
	n := f.uvarintOf(what, "'s length")
	if f.err != nil {
		return nil
	}
	if n > uint64(len(f.b)) {
		f.err = ErrMalformedFrame.New("its " + what + " is longer than the frame (" + strconv.FormatUint(n, 10) + " bytes)")
		return nil
	}
	s := f.b[:n:n]
	f.b = f.b[n:]
	return s
}

// DecodeSendFrame decodes a SendEvent frame's body into r as DecodeRequest
// would the equivalent line, with r.Framed set and r.Payload nil: the
// event object a JSON reader needs is built from r.Event by whoever needs
// it (AppendEventObject). The event's names are checked as a line's are;
// its payload must be one JSON value (CheckPayload). Like DecodeRequest it
// may rewrite body in place, and r.ID is set even when it fails, if the
// frame had one. The slices point into body.
func DecodeSendFrame(body []byte, r *Request) error {
	if cap(r.buf) > maxKeptBuf {
		r.buf = nil
	}
	// Field by field, not a whole new Request: every event comes this way.
	r.Type, r.TypeText, r.Payload, r.ID, r.NumID = SendEvent, nil, nil, nil, 0
	r.NoAck, r.IsRequest, r.TimeoutMs, r.Priority, r.Framed = false, false, 0, Normal, true
	r.Event = Event{}
	r.eventErr = nil
	f := frameReader{b: body}
	flags := f.byte("flags")
	pri := Priority(f.byte("priority"))
	r.NumID = f.uvarint("Id")
	if r.NumID != 0 {
		r.ID = strconv.AppendUint(r.idBuf[:0], r.NumID, 10)
	}
	if flags&SendRequest != 0 {
		r.IsRequest = true
		t := f.uvarint("TimeoutMs")
		r.TimeoutMs = int64(min(t, 1<<53))
	}
	ev := &r.Event
	ev.Source = f.str("source")
	ev.Target = f.str("target")
	ev.Name = f.str("event name")
	if flags&SendTrace != 0 {
		ev.TraceParent = f.str("traceparent")
		if ev.TraceState = f.str("tracestate"); len(ev.TraceState) == 0 {
			ev.TraceState = nil // absent, as a line without it
		}
	}
	if f.err != nil {
		return f.err
	}
	switch {
	case flags&^(SendNoAck|SendRequest|SendTrace) != 0:
		return ErrMalformedFrame.New("unknown flags " + strconv.Itoa(int(flags)))
	case pri > Low:
		return errPriority
	}
	r.NoAck = flags&SendNoAck != 0
	r.Priority = pri
	if len(f.b) > 0 {
		p, err := CheckPayload(f.b, &r.buf)
		if err != nil {
			return err
		}
		ev.Payload = p
	}
	if len(ev.Name) == 0 {
		return errNoName
	}
	if !validUTF8(ev.Name) || !validUTF8(ev.Target) || !validUTF8(ev.TraceParent) || !validUTF8(ev.TraceState) {
		return ErrMalformedFrame.New("the event name, target or a trace field is not valid UTF-8")
	}
	r.eventErr = nil
	return nil
}

// DecodeReplyFrame decodes a Reply frame's body as DecodeReply decodes
// the payload of a Reply line.
func DecodeReplyFrame(body []byte, rp *ReplyPayload, buf *[]byte) error {
	*rp = ReplyPayload{}
	f := frameReader{b: body}
	flags := f.byte("flags")
	rp.ReplyTo = f.uvarint("ReplyTo")
	if f.err != nil {
		return f.err
	}
	switch {
	case flags == ReplyError:
		if !validUTF8(f.b) {
			return ErrMalformedFrame.New("the error text is not valid UTF-8")
		}
		rp.Error = string(f.b)
		if rp.Error == "" {
			rp.Error = "(no text)"
		}
	case flags != 0:
		return ErrMalformedFrame.New("unknown flags " + strconv.Itoa(int(flags)))
	case len(f.b) > 0:
		p, err := CheckPayload(f.b, buf)
		if err != nil {
			return err
		}
		rp.Payload = p
	}
	return nil
}

// CheckPayload checks that p is one JSON value (at most MaxDepth-2 deep,
// valid UTF-8) and makes it safe to forward on a line: raw '\r' and '\n'
// between tokens become spaces in place, and raw U+0085, U+2028 and
// U+2029 are escaped in a copy appended to (*buf)[:0]. It returns p, or
// the copy.
func CheckPayload(p []byte, buf *[]byte) ([]byte, error) {
	// depth 2: in the line a JSON reader gets, the payload sits in the
	// response's Data and the event object, and the line may nest
	// MaxDepth levels, as one a .NET sender writes.
	s := scanner{data: p, blank: true, depth: 2}
	s.value()
	s.skipSpace()
	if s.err == ErrTooDeep {
		return nil, errPayloadTooDeep
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.pos != len(p) {
		return nil, ErrInvalidJSON
	}
	if len(p) == 4 && string(p) == "null" {
		return nil, nil
	}
	if s.seps {
		*buf = appendEscapedSeps((*buf)[:0], p)
		return *buf, nil
	}
	return p, nil
}

// errPayloadTooDeep is a frame's payload nested deeper than a line's
// payload may be.
var errPayloadTooDeep = ErrTooDeep.New(": the payload nests more than " + strconv.Itoa(MaxDepth-2) +
	" levels deep, the most an event's payload may (it sits two levels deep in the line a JSON receiver gets)")

// AppendEventObject appends the event object a JSON reader gets for an
// event that arrived as a frame: the envelope's fields in the order the
// .NET clients write them, the payload, the timestamp t and the trace
// context. Every string is escaped (AppendString), so the object means
// the same to every reader.
func AppendEventObject(b []byte, ev *Event, t time.Time) []byte {
	b = append(b, `{"SourceMachineId":`...)
	b = appendStringBytes(b, ev.Source)
	b = append(b, `,"TargetMachineId":`...)
	b = appendStringBytes(b, ev.Target)
	b = append(b, `,"EventName":`...)
	b = appendStringBytes(b, ev.Name)
	b = append(b, `,"Payload":`...)
	if ev.Payload == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, ev.Payload...)
	}
	b = append(b, `,"Timestamp":`...)
	b = AppendTime(b, t)
	if ev.TraceParent != nil {
		b = append(b, `,"traceparent":`...)
		b = appendStringBytes(b, ev.TraceParent)
		if len(ev.TraceState) > 0 {
			b = append(b, `,"tracestate":`...)
			b = appendStringBytes(b, ev.TraceState)
		}
	}
	return append(b, '}')
}

// Frame is a decoded frame from the service (FrameEvent, FrameAck,
// FrameError, FrameResult), decoded into the same Response a line is.
// DecodeFrame sets Response.Framed, and for a FrameEvent
// Response.Time (unix nanoseconds, 0: none) instead of the raw
// Event.Timestamp and Response.DeadlineNs instead of Response.Deadline.
func DecodeFrame(typ byte, body []byte, r *Response) error {
	*r = Response{Framed: true}
	f := frameReader{b: body}
	switch typ {
	case FrameEvent:
		flags := f.byte("flags")
		r.Time = f.int64("timestamp")
		if flags&EventRequest != 0 {
			r.ReplyTo = f.uvarint("token")
			r.DeadlineNs = f.int64("deadline")
		}
		if flags&EventFor != 0 {
			r.ForID = f.str("For")
		}
		ev := &r.Event
		ev.Source = f.str("source")
		ev.Target = f.str("target")
		ev.Name = f.str("event name")
		if flags&EventTrace != 0 {
			ev.TraceParent = f.str("traceparent")
			ev.TraceState = f.str("tracestate")
		}
		if f.err != nil {
			return f.err
		}
		if len(f.b) > 0 {
			ev.Payload = f.b
		}
		r.Success, r.IsEvent, r.Data = true, true, body
	case FrameAck:
		r.NumID = f.uvarint("Id")
		n := f.uvarint("recipients")
		if f.err != nil {
			return f.err
		}
		r.Success, r.Recipients, r.AckTarget = true, int(n)-1, f.b
	case FrameError:
		r.NumID = f.uvarint("Id")
		if f.byte("flags")&ErrorFor != 0 {
			r.ForID = f.str("For")
		}
		if f.err != nil {
			return f.err
		}
		r.Error = string(f.b)
	case FrameResult:
		r.NumID = f.uvarint("Id")
		if f.err != nil {
			return f.err
		}
		r.Success = true
		if len(f.b) > 0 {
			r.Data = f.b
		}
	default:
		return ErrMalformedFrame.New("unknown frame type " + strconv.Itoa(int(typ)))
	}
	return nil
}

// validUTF8 is utf8.Valid, with a quick pass for ASCII, which event names
// almost always are. A frame's source needs no check: the service acts
// on a frame only if its source is an id the connection holds, and those
// are valid.
func validUTF8(b []byte) bool {
	var or byte
	for _, c := range b {
		or |= c
	}
	return or < utf8.RuneSelf || utf8.Valid(b)
}
