package server

import (
	"encoding/json"
	"errors"
	"path"
	"strconv"
	"time"

	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/outq"
	"github.com/statebus/statebus/protocol"
)

// DurableConfig turns on durable mailboxes (package durable,
// docs/durability.md).
type DurableConfig struct {
	// Store configures the store; Store.Dir "" turns durability off, and
	// then nothing of it costs anything per event.
	Store durable.Config
	// Patterns are machine ids (shell globs, as access rules use) whose
	// events are stored whether or not their receiver declared them
	// durable: MessageBus:Durable.
	Patterns []string
}

// durTag is what the store returns with each stored event: whom to
// acknowledge.
type durTag struct {
	sender *conn
	id     reqID
	noAck  bool
}

type durStore = durable.Store[durTag]
type mailbox = durable.Mailbox[durTag]

// openDurable opens the store when durability is on.
func (s *Server) openDurable() error {
	dc := s.cfg.Durable
	if dc.Store.Dir == "" {
		return nil
	}
	if s.fed != nil {
		// Every daemon reaches every mailbox: they live in the
		// federation's JetStream (docs/durability.md, "Across daemons").
		dc.Store.Shared = &durable.Shared{Conn: s.fed.Conn(), Replicas: s.fed.Replicas(), Name: s.fed.ClusterName()}
		if d := s.fed.StoreDir(); d != "" {
			dc.Store.Dir = d
		}
	}
	for _, p := range dc.Patterns {
		if _, err := path.Match(p, ""); err != nil {
			return errors.New("config: Durable: bad pattern " + strconv.Quote(p))
		}
	}
	if dc.Store.Logger == nil {
		dc.Store.Logger = s.log
	}
	st, err := durable.Open[durTag](dc.Store, s.onStored)
	if err != nil {
		return err
	}
	s.dur = st
	return nil
}

// Durable returns the durable store, nil when durability is off.
func (s *Server) Durable() *durable.Store[durTag] { return s.dur }

// durableMailbox returns target's mailbox when target is durable:
// declared so, or matching a configured pattern (then the mailbox is
// made now).
func (s *Server) durableMailbox(target []byte) (*mailbox, error) {
	if mb := s.dur.Lookup(target); mb != nil {
		return mb, nil
	}
	for _, p := range s.cfg.Durable.Patterns {
		if ok, _ := path.Match(p, string(target)); ok {
			return s.dur.Declare(string(target), -1)
		}
	}
	return nil, nil
}

// store appends an event to a durable mailbox; its sender is acknowledged
// (or told it failed) once the write holding it is stable.
func (c *conn) store(mb *mailbox, r *protocol.Request) error {
	err := c.srv.dur.Append(mb, c.eventJSON(r), durTag{sender: c, id: makeReqID(r.ID), noAck: r.NoAck}, c.quit)
	if err != nil {
		return durErr(err)
	}
	return nil
}

// durErr maps the store's errors to wire errors.
func durErr(err error) error {
	var fe *durable.FullError
	switch {
	case errors.As(err, &fe):
		return protocol.ParseError(fe.Text)
	case errors.Is(err, durable.ErrNoMailbox):
		return err
	default:
		return protocol.ErrNotStored.New(err.Error())
	}
}

// onStored runs on the store's committer after each round: each sender
// gets its acknowledgements ("Stored":true with the sequence) or errors,
// appended in one go per sender.
func (s *Server) onStored(rs []durable.Stored[durTag]) {
	var idb [20]byte
	for _, r := range rs {
		target := []byte(r.Mailbox)
		var text string
		if r.Err != nil {
			text = protocol.Wire(durErr(r.Err)).Text
		}
		for i := 0; i < len(r.Tags); {
			sender := r.Tags[i].sender
			if sender == nil { // a re-driven dead letter
				i++
				continue
			}
			b, err := sender.q.BeginNoWait()
			for ; i < len(r.Tags) && r.Tags[i].sender == sender; i++ {
				t := &r.Tags[i]
				if err != nil {
					continue
				}
				switch {
				case r.Err != nil:
					b = protocol.AppendError(b, text, t.id.bytes(idb[:]))
				case !t.noAck:
					b = protocol.AppendStoredAck(b, target, r.First+uint64(i), t.id.bytes(idb[:]))
				}
			}
			if err == nil {
				sender.q.Commit(b)
			}
		}
	}
}

// durSub hands a mailbox's events to the connection subscribed to it.
type durSub struct {
	c  *conn
	id string
}

// Deliver queues one stored event on the connection, waiting for room
// up to SlowConsumerTimeout (the pump tries again after that).
func (d *durSub) Deliver(mailbox string, seq uint64, event []byte, rewound bool) error {
	c := d.c
	n := len(event) + 2*len(mailbox) + protocol.DurableDeliveryOverhead + 16
	b, err := c.q.BeginPri(outq.Normal, n, c.srv.cfg.SlowConsumerTimeout, c.quit)
	if err != nil {
		return err
	}
	c.q.Commit(addressed(protocol.AppendDurableDelivery(b, event, mailbox, seq, rewound), c.multi.Load(), mailbox))
	return nil
}

// attachDurable makes c the receiver of id's mailbox, if id is durable.
func (c *conn) attachDurable(id string) {
	s := c.srv
	if s.dur == nil {
		return
	}
	mb, err := s.durableMailbox([]byte(id))
	if err != nil || mb == nil {
		return
	}
	for _, d := range c.durSubs {
		if d.id == id {
			return
		}
	}
	d := &durSub{c: c, id: id}
	if s.dur.Attach(mb, d) == nil {
		c.durSubs = append(c.durSubs, d)
	}
}

// detachDurable stops handing id's events to c ("" : every id's).
func (c *conn) detachDurable(id string) {
	if c.srv.dur == nil {
		return
	}
	k := 0
	for _, d := range c.durSubs {
		if id == "" || d.id == id {
			if mb := c.srv.dur.Lookup([]byte(d.id)); mb != nil {
				c.srv.dur.Detach(mb, d)
			}
			continue
		}
		c.durSubs[k] = d
		k++
	}
	clear(c.durSubs[k:])
	c.durSubs = c.durSubs[:k]
}

// mayDeclareDurable checks, before id is registered, that c may declare
// it durable: durability is on and c's access rule allows it.
func (c *conn) mayDeclareDurable(id string) error {
	if c.srv.dur == nil {
		return protocol.ErrNotStored.New("durable mailboxes are off on this service (no MessageBus:DurableDir)")
	}
	if err := c.rule.MayDeclareDurable(id); err != nil {
		c.denied(err)
		return err
	}
	return nil
}

// undoRegister takes back a registration of id that Register could not
// complete (its mailbox could not be made).
func (c *conn) undoRegister(id string) {
	if left, err := c.srv.routes.Unregister(c, id); err == nil {
		c.memberships -= left
	}
	c.release(id)
}

// declareDurable makes id's mailbox durable for c (mayDeclareDurable
// allowed it).
func (c *conn) declareDurable(id string) error {
	s := c.srv
	owner := -1
	if s.uidLimited(c.uid) {
		owner = c.uid
	}
	_, err := s.dur.Declare(id, owner)
	if err != nil {
		return durErr(err)
	}
	return nil
}

// mayRead allows replaying and listing a mailbox to the connection that
// holds its id and to unrestricted users (operators).
func (c *conn) mayRead(id []byte) error {
	if c.rule == nil || c.held(id) != "" {
		return nil
	}
	return protocol.ErrAccessDenied.New("uid " + strconv.Itoa(c.uid) + " may not read the mailbox of " + string(id))
}

// ack answers Ack: the holder of a durable id acknowledges or refuses
// its events.
func (c *conn) ack(r *protocol.Request) error {
	var p protocol.AckPayload
	if err := protocol.DecodeAck(r.Payload, &p); err != nil {
		return err
	}
	if c.held(p.MachineID) == "" {
		return protocol.ErrNotOwner.New(string(p.MachineID))
	}
	mb := c.mailboxOf(p.MachineID)
	if mb == nil {
		return protocol.ErrNoMailbox.New(string(p.MachineID))
	}
	switch {
	case p.Rewind:
		c.srv.dur.Rewind(mb, p.Sequence)
	case p.Refused:
		c.srv.dur.Refuse(mb, p.Sequence, p.Refuse)
	default:
		c.srv.dur.Ack(mb, p.Sequence)
	}
	if r.ID != nil {
		c.reply(nil, r.ID)
	}
	return nil
}

func (c *conn) mailboxOf(id []byte) *mailbox {
	if c.srv.dur == nil {
		return nil
	}
	return c.srv.dur.Lookup(id)
}

// replayPage bounds one Replay answer.
const (
	replayMaxEvents = 1000
	replayMaxBytes  = 512 << 10
)

// replayData is the Data of a Replay answer.
type replayData struct {
	MachineID string `json:"MachineId"`
	Events    []replayEvent
	// Next is the sequence to ask for to read on.
	Next uint64
	// The mailbox now: its first and last stored sequence and the last
	// one its receiver acknowledged.
	FirstSequence, LastSequence, Acknowledged uint64
}

type replayEvent struct {
	Sequence uint64
	StoredAt time.Time
	Event    json.RawMessage
}

// replay answers Replay with one page of a mailbox's stored events.
func (c *conn) replay(r *protocol.Request) error {
	var p protocol.ReplayPayload
	if err := protocol.DecodeReplay(r.Payload, &p); err != nil {
		return err
	}
	if err := c.mayRead(p.MachineID); err != nil {
		c.denied(err)
		return err
	}
	mb := c.mailboxOf(p.MachineID)
	if mb == nil {
		return protocol.ErrNoMailbox.New(string(p.MachineID))
	}
	limit := p.Limit
	if limit <= 0 || limit > replayMaxEvents {
		limit = replayMaxEvents
	}
	evs, next, err := c.srv.dur.Read(mb, p.FromSequence, p.Since, limit, min(replayMaxBytes, c.srv.cfg.MaxMessageBytes/2))
	if err != nil {
		return protocol.ErrNotStored.New("cannot read the mailbox: " + err.Error())
	}
	info := c.srv.dur.Info(mb)
	d := replayData{MachineID: mb.ID(), Events: make([]replayEvent, len(evs)), Next: next,
		FirstSequence: info.FirstSequence, LastSequence: info.LastSequence, Acknowledged: info.Acknowledged}
	for i, e := range evs {
		d.Events[i] = replayEvent{Sequence: e.Sequence, StoredAt: e.StoredAt, Event: e.Event}
	}
	b, _ := json.Marshal(d)
	c.replyLarge(b, r.ID)
	return nil
}

// deadLettersData is the Data of a DeadLetters answer.
type deadLettersData struct {
	DeadLetters []deadLetterInfo `json:",omitempty"`
	Total       int
	Redriven    int `json:",omitempty"`
}

type deadLetterInfo struct {
	durable.DeadLetter
	Event json.RawMessage
}

const deadLettersPage = 100

// deadLetters answers DeadLetters: list (at most deadLettersPage, with
// their events) or re-drive a mailbox's dead letters.
func (c *conn) deadLetters(r *protocol.Request) error {
	var p protocol.DeadLettersPayload
	if err := protocol.DecodeDeadLetters(r.Payload, &p); err != nil {
		return err
	}
	if c.srv.dur == nil {
		return protocol.ErrNoMailbox.New(string(p.MachineID))
	}
	if len(p.MachineID) == 0 && c.rule != nil {
		err := protocol.ErrAccessDenied.New("uid " + strconv.Itoa(c.uid) + " may not list every mailbox's dead letters")
		c.denied(err)
		return err
	}
	if len(p.MachineID) > 0 {
		if err := c.mayRead(p.MachineID); err != nil {
			c.denied(err)
			return err
		}
	}
	var d deadLettersData
	if p.Redrive {
		n, err := c.srv.dur.Redrive(string(p.MachineID), p.Sequence, durTag{})
		if err != nil && n == 0 {
			if errors.Is(err, durable.ErrNoMailbox) {
				return protocol.ErrNoMailbox.New(string(p.MachineID))
			}
			return durErr(err)
		}
		d.Redriven = n
	}
	list, total, err := c.srv.dur.DeadLetters(string(p.MachineID), deadLettersPage)
	if err != nil {
		return protocol.ErrNotStored.New("cannot read the dead letters: " + err.Error())
	}
	d.Total = total
	for _, dl := range list {
		d.DeadLetters = append(d.DeadLetters, deadLetterInfo{DeadLetter: dl, Event: dl.Event})
	}
	b, _ := json.Marshal(d)
	c.replyLarge(b, r.ID)
	return nil
}

// replyLarge queues a response that may be long (a page of events):
// unlike reply it waits for room in the connection's own queue.
func (c *conn) replyLarge(data, id []byte) {
	b, err := c.q.Begin(len(data)+128, c.srv.cfg.SlowConsumerTimeout, c.quit)
	if err != nil {
		return
	}
	c.q.Commit(protocol.AppendOK(b, data, id))
}
