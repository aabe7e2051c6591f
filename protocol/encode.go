package protocol

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeLayout is how statebus writes timestamps: UTC with exactly seven
// fractional digits, the most .NET's DateTime parses reliably (the "o"
// round-trip format).
const TimeLayout = "2006-01-02T15:04:05.0000000Z"

// AppendTime appends t as a quoted JSON timestamp in TimeLayout. It is
// written by hand: clients stamp every event, and this is several times
// faster than time.AppendFormat.
func AppendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		b = append(b, '"')
		b = t.AppendFormat(b, TimeLayout)
		return append(b, '"')
	}
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/100, 7)
	return append(b, 'Z', '"')
}

// appendDigits appends v zero-padded to n digits.
func appendDigits(b []byte, v, n int) []byte {
	var buf [9]byte
	for i := n - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[:n]...)
}

// ParseTimeBytes is ParseTime for the bytes between a JSON string's
// quotes. The format statebus writes (TimeLayout) is parsed by hand, with
// no allocation; anything else goes through ParseTime.
func ParseTimeBytes(b []byte) (time.Time, error) {
	if len(b) == len(TimeLayout) && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' &&
		b[16] == ':' && b[19] == '.' && b[27] == 'Z' {
		year, ok1 := digits(b[0:4])
		month, ok2 := digits(b[5:7])
		day, ok3 := digits(b[8:10])
		hour, ok4 := digits(b[11:13])
		minute, ok5 := digits(b[14:16])
		sec, ok6 := digits(b[17:19])
		frac, ok7 := digits(b[20:27])
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && month >= 1 && month <= 12 &&
			day >= 1 && day <= 31 && hour < 24 && minute < 60 && sec < 60 {
			t := time.Date(year, time.Month(month), day, hour, minute, sec, frac*100, time.UTC)
			if t.Day() == day { // not normalized from an impossible date
				return t, nil
			}
		}
	}
	return ParseTime(string(b))
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// ParseTime parses a timestamp as .NET writes them: RFC 3339 with any
// number of fractional digits, with or without a zone (no zone is taken as
// UTC).
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
	}
	return t, err
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD so
// that the output is always valid, and U+0085, U+2028 and U+2029 are
// escaped, so that the output holds no line break for any line reader.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			// Line breaks to some line readers (Python's splitlines, and
			// JavaScript before ES2019 for U+2028/2029): escaped, so the
			// line stays one line for everyone.
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', hex[r>>12], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			i += n
			continue
		}
		i += n
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendStringBytes is AppendString for a byte slice without converting it.
func appendStringBytes(b, s []byte) []byte {
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return AppendString(b, string(s))
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Response prefixes and suffixes, shared so the hot paths only copy.
const (
	okPrefix  = `{"Success":true,"Data":`
	errPrefix = `{"Success":false,"Data":null,"Error":`
	noError   = `,"Error":null`
)

// AppendDelivery appends the line that delivers an event to its target:
// the event object exactly as the sender wrote it, wrapped in a response.
func AppendDelivery(b, event []byte) []byte {
	b = append(b, okPrefix...)
	b = append(b, event...)
	return append(b, noError+"}\n"...)
}

// AppendRequestDelivery appends the delivery of a request event: the event
// as the sender wrote it, with the token the target replies with and the
// caller's deadline (zero: none).
func AppendRequestDelivery(b, event []byte, replyTo uint64, deadline time.Time) []byte {
	b = append(b, okPrefix...)
	b = append(b, event...)
	b = append(b, noError+`,"ReplyTo":`...)
	b = strconv.AppendUint(b, replyTo, 10)
	if !deadline.IsZero() {
		b = append(b, `,"Deadline":`...)
		b = AppendTime(b, deadline)
	}
	return append(b, '}', '\n')
}

// AppendFor adds the "For" member (a statebus extension) to the delivery
// line at the end of b, which ends in "}\n": the id, among those the
// receiving connection holds, that the event is for. The service adds it
// on connections that hold more than one id, where TargetMachineId ("*",
// "@group", a redirected id) does not always say.
func AppendFor(b []byte, id string) []byte {
	b = append(b[:len(b)-2], `,"For":`...)
	b = AppendString(b, id)
	return append(b, '}', '\n')
}

// AppendWatchCopy appends the copy of an event sent to a watcher: the
// event as its sender wrote it, with the watch's id.
func AppendWatchCopy(b, event []byte, watchID uint64) []byte {
	b = append(b, okPrefix...)
	b = append(b, event...)
	b = append(b, noError+`,"Watch":`...)
	b = strconv.AppendUint(b, watchID, 10)
	return append(b, '}', '\n')
}

// AppendReply appends a Reply request: payload (raw JSON) or, when errText
// is not empty, an error.
func AppendReply(b []byte, replyTo uint64, payload []byte, errText string) []byte {
	b = append(b, `{"Type":102,"Payload":{"ReplyTo":`...)
	b = strconv.AppendUint(b, replyTo, 10)
	if errText != "" {
		b = append(b, `,"Error":`...)
		b = AppendString(b, errText)
	} else {
		b = append(b, `,"Payload":`...)
		if payload == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, payload...)
		}
	}
	return append(b, "}}\n"...)
}

// DeliveryOverhead is how many bytes AppendDelivery adds to an event.
const DeliveryOverhead = len(okPrefix) + len(noError) + 2

func appendEnd(b, id []byte) []byte {
	if id != nil {
		b = append(b, `,"Id":`...)
		b = append(b, id...)
	}
	return append(b, '}', '\n')
}

// AppendAck appends the acknowledgement of a delivered event. recipients
// is written only for broadcasts (n >= 0).
func AppendAck(b []byte, target []byte, recipients int, id []byte) []byte {
	b = append(b, okPrefix...)
	b = AppendAckData(b, target, recipients)
	b = append(b, noError...)
	return appendEnd(b, id)
}

// AppendAckData appends an acknowledgement's Data:
// {"Delivered":true,"TargetMachineId":target[,"Recipients":n]}.
func AppendAckData(b []byte, target []byte, recipients int) []byte {
	b = append(b, `{"Delivered":true,"TargetMachineId":`...)
	b = appendStringBytes(b, target)
	if recipients >= 0 {
		b = append(b, `,"Recipients":`...)
		b = strconv.AppendInt(b, int64(recipients), 10)
	}
	return append(b, '}')
}

// AppendError appends an error response.
func AppendError(b []byte, text string, id []byte) []byte {
	b = append(b, errPrefix...)
	b = AppendString(b, text)
	return appendEnd(b, id)
}

// AppendOK appends a successful response whose Data is data (raw JSON,
// "null" when nil).
func AppendOK(b, data, id []byte) []byte {
	b = append(b, okPrefix...)
	if data == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, data...)
	}
	b = append(b, noError...)
	return appendEnd(b, id)
}

// AppendMachineTime appends {"MachineId":id,"<field>":t}, the Data of the
// Register and Subscribe responses (field RegisteredAt or SubscribedAt).
func AppendMachineTime(b, id []byte, field string, t time.Time) []byte {
	b = append(b, `{"MachineId":`...)
	b = appendStringBytes(b, id)
	b = append(b, ',', '"')
	b = append(b, field...)
	b = append(b, '"', ':')
	b = AppendTime(b, t)
	return append(b, '}')
}

// AppendFraming adds "Framing":name to the object at the end of b (the
// Data of a Register response that accepts the compact framing).
func AppendFraming(b []byte, name string) []byte {
	b = append(b[:len(b)-1], `,"Framing":`...)
	b = AppendString(b, name)
	return append(b, '}')
}

func appendRequestStart(b []byte, t MessageType, id uint64) []byte {
	b = append(b, `{"Type":`...)
	b = strconv.AppendInt(b, int64(t), 10)
	if id != 0 {
		b = append(b, `,"Id":`...)
		b = strconv.AppendUint(b, id, 10)
	}
	return append(b, `,"Payload":`...)
}

// AppendRegister appends a Register request. id 0 means no request id.
func AppendRegister(b []byte, id uint64, machine, processName string, pid int, at time.Time) []byte {
	b = appendRequestStart(b, Register, id)
	b = append(b, `{"MachineId":`...)
	b = AppendString(b, machine)
	b = append(b, `,"ProcessName":`...)
	b = AppendString(b, processName)
	b = append(b, `,"ProcessId":`...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, `,"RegisteredAt":`...)
	b = AppendTime(b, at)
	return append(b, "}}\n"...)
}

// AppendMachineRequest appends a Subscribe or Unregister request, whose
// payload is the machine id as a JSON string.
func AppendMachineRequest(b []byte, t MessageType, id uint64, machine string) []byte {
	b = appendRequestStart(b, t, id)
	b = AppendString(b, machine)
	return append(b, "}\n"...)
}

// SendOptions are the statebus extensions a SendEvent line may carry; the
// zero value is a plain event without a request id.
type SendOptions struct {
	ID uint64 // request id; 0: none
	// NoAck: the service sends no acknowledgement on success (errors still
	// come); see Request.NoAck.
	NoAck bool
	// Request makes the event a request; TimeoutMs is its deadline (0:
	// none).
	Request   bool
	TimeoutMs int64
	// Priority is "High", "Normal" or "Low"; "" is Normal.
	Priority string
	// TraceParent and TraceState, when set, go into the event object as
	// "traceparent" and "tracestate" (the trace context extension).
	TraceParent, TraceState string
}

// AppendSendEvent appends a SendEvent request. payload is raw JSON (nil
// for null).
func AppendSendEvent(b []byte, source, target, event string, payload []byte, at time.Time, o SendOptions) []byte {
	b = append(b, `{"Type":2,`...)
	if o.ID != 0 {
		b = append(b, `"Id":`...)
		b = strconv.AppendUint(b, o.ID, 10)
		b = append(b, ',')
	}
	if o.NoAck {
		b = append(b, `"NoAck":true,`...)
	}
	if o.Request {
		b = append(b, `"Request":true,"TimeoutMs":`...)
		b = strconv.AppendInt(b, o.TimeoutMs, 10)
		b = append(b, ',')
	}
	if o.Priority != "" && o.Priority != "Normal" {
		b = append(b, `"Priority":`...)
		b = AppendString(b, o.Priority)
		b = append(b, ',')
	}
	b = append(b, `"Payload":`...)
	b = append(b, `{"SourceMachineId":`...)
	b = AppendString(b, source)
	b = append(b, `,"TargetMachineId":`...)
	b = AppendString(b, target)
	b = append(b, `,"EventName":`...)
	b = AppendString(b, event)
	b = append(b, `,"Payload":`...)
	if payload == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, payload...)
	}
	b = append(b, `,"Timestamp":`...)
	b = AppendTime(b, at)
	if o.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = AppendString(b, o.TraceParent)
		if o.TraceState != "" {
			b = append(b, `,"tracestate":`...)
			b = AppendString(b, o.TraceState)
		}
	}
	return append(b, "}}\n"...)
}
