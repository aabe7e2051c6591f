package protocol

import (
	"strconv"
	"time"
)

// Durable mailboxes (statebus extensions; see docs/durability.md). An
// event sent to a durable machine id is stored before it is
// acknowledged, with "Stored":true and its mailbox "Sequence" in the
// acknowledgement; the delivery to the target carries "Mailbox" and
// "Sequence" after "Error", and the target acknowledges what it
// processed with Ack. .NET clients never send these types and ignore the
// extra members.
const (
	// Ack (108) acknowledges a durable mailbox's events up to Sequence,
	// or, with Refuse, refuses event Sequence (Payload: {"MachineId": id,
	// "Sequence": n, "Refuse": reason}). Only the connection holding the
	// id may. No response unless it fails or carries an Id.
	Ack MessageType = 108
	// Replay (109) reads a durable mailbox's stored events (Payload:
	// {"MachineId": id, "FromSequence": n, "Since": time, "Limit": n}).
	Replay MessageType = 109
	// DeadLetters (110) lists or re-drives dead letters (Payload:
	// {"MachineId": id, "Redrive": bool, "Sequence": n}, all optional).
	DeadLetters MessageType = 110
)

func init() {
	typeNames[Ack] = "Ack"
	typeNames[Replay] = "Replay"
	typeNames[DeadLetters] = "DeadLetters"
}

// MaxRefuseBytes bounds the reason of a refusal, which the dead letters
// keep.
const MaxRefuseBytes = 256

// AckPayload is the payload of Ack.
type AckPayload struct {
	MachineID []byte
	Sequence  uint64
	Refuse    string
	Refused   bool
	// Rewind ("Rewind":true) asks for Sequence and every later event
	// again without counting a refusal: the client dropped them.
	Rewind bool
}

var errLongRefuse = ErrLimit.New("a Refuse reason is at most " + strconv.Itoa(MaxRefuseBytes) + " bytes")

// DecodeAck decodes an Ack payload.
func DecodeAck(payload []byte, p *AckPayload) error {
	*p = AckPayload{}
	hasSeq := false
	var err error
	p.MachineID, err = durableMembers(payload, "an ack object", func(s *scanner, it *objectIter) error {
		switch {
		case it.is("Sequence"):
			n, err := strconv.ParseUint(string(it.raw(s)), 10, 64)
			hasSeq = err == nil
			p.Sequence = n
		case it.is("Rewind"):
			p.Rewind = it.Kind == 't'
		case it.is("Refuse") && it.Kind == '"':
			v, err := stringValue(it.raw(s))
			if err != nil {
				return err
			}
			p.Refuse, p.Refused = v, true
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case len(p.MachineID) == 0:
		return Required("MachineId")
	case !hasSeq:
		return Required("Sequence")
	case len(p.Refuse) > MaxRefuseBytes:
		return errLongRefuse
	}
	return nil
}

// durableMembers walks the object payload of a durable request: it
// returns its MachineId and hands every other member to f.
func durableMembers(payload []byte, what string, f func(*scanner, *objectIter) error) ([]byte, error) {
	var s scanner
	var it objectIter
	if err := payloadObject(&s, &it, payload, what); err != nil {
		return nil, err
	}
	var id []byte
	for it.next(&s) {
		if it.is("MachineId") && it.Kind == '"' {
			v, err := stringValue(it.raw(&s))
			if err != nil {
				return nil, err
			}
			id = []byte(v)
			continue
		}
		if err := f(&s, &it); err != nil {
			return nil, err
		}
	}
	return id, s.finish()
}

// ReplayPayload is the payload of Replay.
type ReplayPayload struct {
	MachineID    []byte
	FromSequence uint64
	Since        time.Time
	Limit        int
}

// DecodeReplay decodes a Replay payload.
func DecodeReplay(payload []byte, p *ReplayPayload) error {
	*p = ReplayPayload{}
	var err error
	p.MachineID, err = durableMembers(payload, "a replay object", func(s *scanner, it *objectIter) error {
		switch {
		case it.is("FromSequence"):
			p.FromSequence, _ = strconv.ParseUint(string(it.raw(s)), 10, 64)
		case it.is("Limit"):
			p.Limit, _ = strconv.Atoi(string(it.raw(s)))
		case it.is("Since") && it.Kind == '"':
			v, err := stringValue(it.raw(s))
			if err != nil {
				return err
			}
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return ErrMissingField.with("Since must be a time such as 2026-01-02T15:04:05Z")
			}
			p.Since = t
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(p.MachineID) == 0 {
		return Required("MachineId")
	}
	return ValidateID(p.MachineID)
}

// DeadLettersPayload is the payload of DeadLetters.
type DeadLettersPayload struct {
	MachineID []byte
	Redrive   bool
	Sequence  uint64
}

// DecodeDeadLetters decodes a DeadLetters payload (a missing payload is
// a list of every mailbox's).
func DecodeDeadLetters(payload []byte, p *DeadLettersPayload) error {
	*p = DeadLettersPayload{}
	if payload == nil {
		return nil
	}
	var err error
	p.MachineID, err = durableMembers(payload, "a dead letters object", func(s *scanner, it *objectIter) error {
		switch {
		case it.is("Redrive"):
			p.Redrive = it.Kind == 't'
		case it.is("Sequence"):
			p.Sequence, _ = strconv.ParseUint(string(it.raw(s)), 10, 64)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.Redrive && len(p.MachineID) == 0 {
		return Required("MachineId")
	}
	return nil
}

// AppendStoredAck appends the acknowledgement of an event stored in a
// durable mailbox: not (yet) delivered, stored as sequence seq.
func AppendStoredAck(b, target []byte, seq uint64, id []byte) []byte {
	b = append(b, okPrefix+`{"Delivered":false,"TargetMachineId":`...)
	b = appendStringBytes(b, target)
	b = append(b, `,"Stored":true,"Sequence":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '}')
	b = append(b, noError...)
	return appendEnd(b, id)
}

// AppendDurableDelivery appends the delivery of a durable mailbox's event:
// the event as its sender wrote it, with the mailbox and sequence to
// acknowledge, and "Rewound":true on the first event handed over again
// after a refusal.
func AppendDurableDelivery(b, event []byte, mailbox string, seq uint64, rewound bool) []byte {
	b = append(b, okPrefix...)
	b = append(b, event...)
	b = append(b, noError+`,"Mailbox":`...)
	b = AppendString(b, mailbox)
	b = append(b, `,"Sequence":`...)
	b = strconv.AppendUint(b, seq, 10)
	if rewound {
		b = append(b, `,"Rewound":true`...)
	}
	return append(b, '}', '\n')
}

// DurableDeliveryOverhead bounds what AppendDurableDelivery adds to an
// event and its mailbox id.
const DurableDeliveryOverhead = DeliveryOverhead + 64

// AppendAckRequest appends an Ack request; refuse != "" refuses seq.
func AppendAckRequest(b []byte, machine string, seq uint64, refuse string) []byte {
	b = append(b, `{"Type":108,"Payload":{"MachineId":`...)
	b = AppendString(b, machine)
	b = append(b, `,"Sequence":`...)
	b = strconv.AppendUint(b, seq, 10)
	if refuse != "" {
		b = append(b, `,"Refuse":`...)
		b = AppendString(b, refuse)
	}
	return append(b, "}}\n"...)
}

// AppendRewindRequest appends an Ack request with "Rewind":true.
func AppendRewindRequest(b []byte, machine string, seq uint64) []byte {
	b = AppendAckRequest(b, machine, seq, "")
	b = b[:len(b)-3]
	return append(b, `,"Rewind":true}}`+"\n"...)
}

// AppendReplay appends a Replay request with request id seq.
func AppendReplay(b []byte, seq uint64, machine string, from uint64, since time.Time, limit int) []byte {
	b = appendRequestStart(b, Replay, seq)
	b = append(b, `{"MachineId":`...)
	b = AppendString(b, machine)
	if from > 0 {
		b = append(b, `,"FromSequence":`...)
		b = strconv.AppendUint(b, from, 10)
	}
	if !since.IsZero() {
		b = append(b, `,"Since":`...)
		b = AppendTime(b, since)
	}
	if limit > 0 {
		b = append(b, `,"Limit":`...)
		b = strconv.AppendInt(b, int64(limit), 10)
	}
	return append(b, "}}\n"...)
}

// AppendDeadLetters appends a DeadLetters request with request id seq.
func AppendDeadLetters(b []byte, seq uint64, machine string, redrive bool, which uint64) []byte {
	b = appendRequestStart(b, DeadLetters, seq)
	b = append(b, '{')
	if machine != "" {
		b = append(b, `"MachineId":`...)
		b = AppendString(b, machine)
		b = append(b, ',')
	}
	b = append(b, `"Redrive":`...)
	b = strconv.AppendBool(b, redrive)
	if which > 0 {
		b = append(b, `,"Sequence":`...)
		b = strconv.AppendUint(b, which, 10)
	}
	return append(b, "}}\n"...)
}

// AppendRegisterDurable appends a Register request that declares the id
// durable ("Durable":true, an extension .NET clients never send).
func AppendRegisterDurable(b []byte, id uint64, machine, processName string, pid int, at time.Time) []byte {
	b = AppendRegister(b, id, machine, processName, pid, at)
	// Insert before the payload's closing "}}\n".
	b = b[:len(b)-3]
	return append(b, `,"Durable":true}}`+"\n"...)
}

// ErrNotStored: an event for a durable mailbox could not be stored (the
// store's disk is full or failing, or the service is stopping); the
// sender should send it again later. Nothing of it was acknowledged.
var ErrNotStored = &Kind{"Not stored: ", "event not stored"}

// ErrNoMailbox: a durable request names an id without a durable mailbox.
var ErrNoMailbox = &Kind{"No durable mailbox: ", "no durable mailbox"}

func init() { kinds = append([]*Kind{ErrNotStored, ErrNoMailbox}, kinds...) }
