package protocol

import "strconv"

// SetState (a statebus extension, type 107) records a short text in the
// registry next to a machine id the connection holds: an orchestrated
// state machine's current state, shown by Machines (MachineInfo.State),
// `statebus machines` and the monitoring endpoint's /machines. Payload:
// {"MachineId": id, "State": text}; an empty State clears it. The .NET
// clients never send it, and nothing they receive changes.
const SetState MessageType = 107

func init() { typeNames[SetState] = "SetState" }

// MaxStateBytes is the longest State the registry keeps for an id.
const MaxStateBytes = 256

// StatePayload is the payload of SetState.
type StatePayload struct {
	MachineID []byte
	State     string
}

var (
	errLongState = ErrLimit.New("a State is at most " + strconv.Itoa(MaxStateBytes) + " bytes")
	errBadState  = ErrMissingField.with("State must not contain control, invisible or bidirectional-control characters")
)

// DecodeState decodes a SetState payload and checks it: MachineId is
// required, State is at most MaxStateBytes bytes of UTF-8 without
// control or invisible characters (the id alphabet, spaces allowed), so
// that it shows as what it is wherever the registry is printed.
func DecodeState(payload []byte, p *StatePayload) error {
	*p = StatePayload{}
	var s scanner
	var it objectIter
	if err := payloadObject(&s, &it, payload, "a state object"); err != nil {
		return err
	}
	hasState := false
	for it.next(&s) {
		if it.Kind != '"' {
			continue
		}
		v, err := stringValue(it.raw(&s))
		if err != nil {
			return err
		}
		switch {
		case it.is("MachineId"):
			p.MachineID = []byte(v)
		case it.is("State"):
			p.State, hasState = v, true
		}
	}
	if err := s.finish(); err != nil {
		return err
	}
	switch {
	case len(p.MachineID) == 0:
		return Required("MachineId")
	case !hasState:
		return Required("State")
	case len(p.State) > MaxStateBytes:
		return errLongState
	}
	if checkAlphabet([]byte(p.State), "") != nil {
		return errBadState
	}
	return nil
}

// AppendSetState appends a SetState request line with request id seq.
func AppendSetState(b []byte, seq uint64, id, state string) []byte {
	b = append(b, `{"Type":107,"Id":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"Payload":{"MachineId":`...)
	b = AppendString(b, id)
	b = append(b, `,"State":`...)
	b = AppendString(b, state)
	return append(b, "}}\n"...)
}
