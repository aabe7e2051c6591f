package durable

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

// Mailbox is one durable machine id's stored events. Its fields are the
// store's, under the store's lock.
type Mailbox[T any] struct {
	st    *Store[T]
	id    string
	tok   string // the id as a subject token
	owner int    // uid that declared it; -1: configuration
	ret   Retention

	batches    []batch // retained writes, oldest first
	first      uint64  // first retained sequence (last+1 when none)
	last       uint64  // last stored sequence
	count      int64   // retained events
	bytes      int64   // retained event bytes
	lastJs     uint64  // stream sequence of the last write (0: none)
	acked      uint64  // last acknowledged sequence
	ackedIdx   int     // batches[:ackedIdx] are fully acknowledged
	ackedBytes int64   // their bytes
	ackedCount int64

	pend      []byte // records appended, not yet written
	pendTags  []T
	pendWait  []waiter // appends whose outcome someone waits for (Redrive)
	pendN     int
	flyN      int       // events in the round being written
	flyBytes  int64     // their bytes
	inDirty   bool      // in the store's dirty list
	stateDirt bool      // acked (or the declaration) changed since written
	deadPend  []deadJob // refused events on their way to the dead letters
	deadOut   int       // dead letters in the round being written
	conflicts int       // Shared: rounds in a row another daemon's write came first
	conflict0 time.Time // Shared: when the first of them failed
	ackHint   uint64    // Shared: acknowledged elsewhere, beyond what is known here

	// Delivery.
	sub      Subscriber
	next     uint64 // next sequence to hand to sub
	gen      uint64 // changes when next is moved behind the pump's back
	rewound  bool   // the next event handed to sub says so
	refused  uint64 // the sequence refusals counts are for
	refusals int
	wake     chan struct{} // 1-slot: the pump has something to do
	tail     batch         // the latest write, with its data, for live delivery
}

// batch is one write of a mailbox: events first..first+n-1, at jsSeq.
type batch struct {
	first uint64
	n     uint32
	bytes int64
	at    int64 // unix ns
	jsSeq uint64
	data  []byte // only in tail
}

func (b *batch) last() uint64 { return b.first + uint64(b.n) - 1 }

func token(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// ID returns the mailbox's machine id.
func (mb *Mailbox[T]) ID() string { return mb.id }

// Lookup returns the mailbox of id, or nil. It takes no lock.
func (s *Store[T]) Lookup(id []byte) *Mailbox[T] {
	return (*s.boxes.Load())[string(id)]
}

// Declare returns the mailbox of id, creating it for owner (a limited
// uid, or -1 for the configuration's patterns, which no per-user limit
// applies to) if it does not exist.
func (s *Store[T]) Declare(id string, owner int) (*Mailbox[T], error) {
	if mb := s.Lookup([]byte(id)); mb != nil {
		return mb, nil
	}
	var known *stateRecord
	if s.cfg.Shared != nil {
		known = s.sharedState(id) // declared by another daemon, not yet read here
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	boxes := *s.boxes.Load()
	if mb := boxes[id]; mb != nil {
		return mb, nil
	}
	if known != nil {
		mb := s.newMailboxLocked(id, known.Owner)
		mb.ackHint = known.Acked
		return mb, nil
	}
	if len(boxes) >= s.cfg.MaxMailboxes {
		return nil, &FullError{"Limit reached: " + strconv.Itoa(s.cfg.MaxMailboxes) + " durable mailboxes (DurableMaxMailboxes); an operator must raise it or remove mailboxes"}
	}
	if owner >= 0 && s.cfg.MaxMailboxesPerUID > 0 && s.perUID[owner] >= s.cfg.MaxMailboxesPerUID {
		return nil, &FullError{"Limit reached: " + strconv.Itoa(s.cfg.MaxMailboxesPerUID) + " durable mailboxes per user (DurableMaxMailboxesPerUid) for uid " + strconv.Itoa(owner)}
	}
	mb := s.newMailboxLocked(id, owner)
	mb.stateDirt = true
	s.markDirtyLocked(mb)
	return mb, nil
}

func (s *Store[T]) newMailboxLocked(id string, owner int) *Mailbox[T] {
	mb := &Mailbox[T]{st: s, id: id, tok: token(id), owner: owner, ret: s.cfg.Retention,
		first: 1, wake: make(chan struct{}, 1)}
	old := *s.boxes.Load()
	boxes := make(map[string]*Mailbox[T], len(old)+1)
	for k, v := range old {
		boxes[k] = v
	}
	boxes[id] = mb
	s.boxes.Store(&boxes)
	if owner >= 0 {
		s.perUID[owner]++
	}
	return mb
}

func (s *Store[T]) markDirtyLocked(mb *Mailbox[T]) {
	if !mb.inDirty {
		mb.inDirty = true
		s.dirty = append(s.dirty, mb)
	}
	s.kick()
}

// Append stores a copy of event in mb; the outcome reaches OnStored with
// tag, after the write holding it is stable (SyncAlways). It waits while
// MaxPendingBytes are already waiting to be written, up to
// PendingTimeout or until stop is closed.
func (s *Store[T]) Append(mb *Mailbox[T], event []byte, tag T, stop <-chan struct{}) error {
	return s.appendEvent(mb, event, tag, stop, nil)
}

// waiter is an append whose outcome is also sent on done (buffered): the
// i-th of its mailbox's pending events, or of a write's.
type waiter struct {
	i    int
	done chan<- error
}

func (s *Store[T]) appendEvent(mb *Mailbox[T], event []byte, tag T, stop <-chan struct{}, done chan<- error) error {
	need := len(event) + binary.MaxVarintLen32
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if err := s.broken; err != nil {
			s.mu.Unlock()
			s.ctr.Failed.Add(1)
			return err
		}
		if s.pendBytes == 0 || s.pendBytes+need <= s.cfg.MaxPendingBytes {
			break
		}
		room := s.room
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(s.cfg.PendingTimeout)
		}
		select {
		case <-room:
		case <-timer.C:
			s.ctr.Failed.Add(1)
			return ErrBusy
		case <-stop:
			return ErrClosed
		}
		s.mu.Lock()
	}
	if err := mb.roomLocked(int64(len(event))); err != nil {
		s.mu.Unlock()
		return err
	}
	mb.pend = binary.AppendUvarint(mb.pend, uint64(len(event)))
	mb.pend = append(mb.pend, event...)
	mb.pendTags = append(mb.pendTags, tag)
	if done != nil {
		mb.pendWait = append(mb.pendWait, waiter{mb.pendN, done})
	}
	mb.pendN++
	s.pendBytes += need
	s.markDirtyLocked(mb)
	s.mu.Unlock()
	return nil
}

// roomLocked checks that one more event of n bytes fits mb's retention
// without dropping an unacknowledged one.
func (mb *Mailbox[T]) roomLocked(n int64) error {
	unacked := int64(mb.last-mb.acked) + int64(mb.pendN+mb.flyN)
	if unacked+1 > mb.ret.MaxEvents {
		return &FullError{"Limit reached: durable mailbox " + mb.id + " holds " + strconv.FormatInt(mb.ret.MaxEvents, 10) +
			" unprocessed events (DurableMaxEvents); its receiver must catch up first"}
	}
	if mb.bytes-mb.ackedBytes+int64(len(mb.pend))+mb.flyBytes+n > mb.ret.MaxBytes {
		return &FullError{"Limit reached: durable mailbox " + mb.id + " holds " + strconv.FormatInt(mb.ret.MaxBytes, 10) +
			" bytes of unprocessed events (DurableMaxBytes); its receiver must catch up first"}
	}
	return nil
}

// Ack records that the mailbox's subscriber processed every event up to
// seq. Acknowledgements are written with the next round.
func (s *Store[T]) Ack(mb *Mailbox[T], seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ackLocked(mb, seq)
}

func (s *Store[T]) ackLocked(mb *Mailbox[T], seq uint64) {
	if s.advanceAckLocked(mb, seq) {
		mb.stateDirt = true
		s.markDirtyLocked(mb)
	}
}

// advanceAckLocked moves mb's acknowledged position to seq; false if it
// was there already.
func (s *Store[T]) advanceAckLocked(mb *Mailbox[T], seq uint64) bool {
	seq = min(seq, mb.last)
	if seq <= mb.acked {
		return false
	}
	mb.acked = seq
	if mb.refused <= seq {
		mb.refused, mb.refusals = 0, 0
	}
	if mb.next <= seq {
		mb.next = seq + 1
	}
	for mb.ackedIdx < len(mb.batches) && mb.batches[mb.ackedIdx].last() <= seq {
		b := &mb.batches[mb.ackedIdx]
		mb.ackedBytes += b.bytes
		mb.ackedCount += int64(b.n)
		mb.ackedIdx++
	}
	return true
}

// Refuse records that the subscriber could not process seq: it is
// handed over again (with every later one), or, after MaxDeliveries
// refusals, moved to the dead letters and acknowledged.
func (s *Store[T]) Refuse(mb *Mailbox[T], seq uint64, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= mb.acked || seq > mb.last {
		return
	}
	if mb.refused != seq {
		mb.refused, mb.refusals = seq, 0
	}
	mb.refusals++
	if mb.refusals >= s.cfg.MaxDeliveries {
		s.deadLetterLocked(mb, seq, "refused "+strconv.Itoa(mb.refusals)+" times: "+reason)
		s.ackLocked(mb, seq)
	} else {
		mb.next = seq
	}
	mb.gen++
	mb.rewound = true
	mb.poke()
}

// Rewind hands seq and every later event over again, without counting
// a refusal (the subscriber dropped them).
func (s *Store[T]) Rewind(mb *Mailbox[T], seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= mb.acked || seq > mb.last {
		return
	}
	mb.next = seq
	mb.gen++
	mb.rewound = true
	mb.poke()
}

// MailboxInfo describes a mailbox.
type MailboxInfo struct {
	MachineID     string `json:"MachineId"`
	FirstSequence uint64
	LastSequence  uint64
	Acknowledged  uint64
	Events        int64
	Bytes         int64
	Attached      bool
}

// Info describes mb.
func (s *Store[T]) Info(mb *Mailbox[T]) MailboxInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return MailboxInfo{MachineID: mb.id, FirstSequence: mb.first, LastSequence: mb.last, Acknowledged: mb.acked,
		Events: mb.count, Bytes: mb.bytes, Attached: mb.sub != nil}
}

// Mailboxes describes every mailbox, by id.
func (s *Store[T]) Mailboxes() []MailboxInfo {
	var out []MailboxInfo
	for _, mb := range *s.boxes.Load() {
		out = append(out, s.Info(mb))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MachineID < out[j].MachineID })
	return out
}

// stateRecord is a mailbox's state as stored.
type stateRecord struct {
	ID    string `json:"id"`
	Owner int    `json:"owner"`
	Acked uint64 `json:"acked"`
}

func (mb *Mailbox[T]) stateJSON() []byte {
	b, _ := json.Marshal(stateRecord{ID: mb.id, Owner: mb.owner, Acked: mb.acked})
	return b
}

// find returns the index of the batch holding seq, or the first batch
// after it.
func (mb *Mailbox[T]) find(seq uint64) int {
	return sort.Search(len(mb.batches), func(i int) bool { return mb.batches[i].last() >= seq })
}
