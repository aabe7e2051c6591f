package durable

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/testdir"
)

// outcomes collects what OnStored reports.
type outcomes struct {
	mu   sync.Mutex
	seqs map[int]uint64 // tag -> sequence
	errs map[int]error
}

func (o *outcomes) onStored(rs []Stored[int]) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range rs {
		for i, tag := range r.Tags {
			if r.Err != nil {
				o.errs[tag] = r.Err
			} else {
				o.seqs[tag] = r.First + uint64(i)
			}
		}
	}
}

func (o *outcomes) done() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seqs) + len(o.errs)
}

func open(t testing.TB, dir string, edit func(*Config)) (*Store[int], *outcomes) {
	t.Helper()
	cfg := DefaultConfig(dir)
	if edit != nil {
		edit(&cfg)
	}
	o := &outcomes{seqs: map[int]uint64{}, errs: map[int]error{}}
	s, err := Open[int](cfg, o.onStored)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sink is a subscriber that records what it gets.
type sink struct {
	mu      sync.Mutex
	seqs    []uint64
	events  [][]byte
	rewound []bool
	refuse  error
}

func (k *sink) Deliver(_ string, seq uint64, ev []byte, rewound bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refuse != nil {
		return k.refuse
	}
	k.seqs = append(k.seqs, seq)
	k.events = append(k.events, bytes.Clone(ev))
	k.rewound = append(k.rewound, rewound)
	return nil
}

func (k *sink) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.seqs)
}

func ev(i int) []byte { return []byte(`{"EventName":"E","Payload":` + strconv.Itoa(i) + `}`) }

func appendN(t testing.TB, s *Store[int], mb *Mailbox[int], from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(mb, ev(i), i, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoreDeliverRecover: events stored while nobody is attached are
// delivered in order from the first unacknowledged one, also after the
// store is reopened, and acknowledged ones are not delivered again.
func TestStoreDeliverRecover(t *testing.T) {
	dir := testdir.New(t)
	s, o := open(t, dir, nil)
	mb, err := s.Declare("ctl", -1)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, mb, 0, 100)
	waitFor(t, "100 stored", func() bool { return o.done() == 100 })
	for i := range 100 {
		if o.seqs[i] != uint64(i+1) {
			t.Fatalf("tag %d got sequence %d, want %d (errs %v)", i, o.seqs[i], i+1, o.errs[i])
		}
	}
	k := &sink{}
	if err := s.Attach(mb, k); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "100 delivered", func() bool { return k.len() == 100 })
	s.Ack(mb, 40)
	s.Detach(mb, k)
	waitFor(t, "ack written", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !mb.stateDirt && !mb.inDirty })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, o = open(t, dir, nil)
	defer s.Close()
	mb = s.Lookup([]byte("ctl"))
	if mb == nil {
		t.Fatal("mailbox ctl not recovered")
	}
	if info := s.Info(mb); info.LastSequence != 100 || info.Acknowledged != 40 || info.Events != 100 {
		t.Fatalf("recovered %+v, want last 100, acked 40, 100 events", info)
	}
	appendN(t, s, mb, 100, 10)
	waitFor(t, "10 more stored", func() bool { return o.done() == 10 })
	if o.seqs[100] != 101 {
		t.Fatalf("first event after reopening got sequence %d, want 101", o.seqs[100])
	}
	k = &sink{}
	s.Attach(mb, k)
	waitFor(t, "redelivery", func() bool { return k.len() == 70 })
	for i, seq := range k.seqs {
		if seq != uint64(41+i) || !bytes.Equal(k.events[i], ev(40+i)) {
			t.Fatalf("delivery %d: sequence %d %s, want %d %s", i, seq, k.events[i], 41+i, ev(40+i))
		}
	}
	got, next, err := s.Read(mb, 5, time.Time{}, 3, 1<<20)
	if err != nil || len(got) != 3 || got[0].Sequence != 5 || next != 8 || !bytes.Equal(got[2].Event, ev(6)) {
		t.Fatalf("Read(5, limit 3) = %v, next %d, %v", got, next, err)
	}
}

// TestStoreRefuseDeadLetter: an event refused MaxDeliveries times goes to
// the dead letters, delivery goes on after it, and a re-drive stores it
// again as a new event.
func TestStoreRefuseDeadLetter(t *testing.T) {
	s, o := open(t, testdir.New(t), func(c *Config) { c.MaxDeliveries = 3 })
	defer s.Close()
	mb, _ := s.Declare("w", -1)
	appendN(t, s, mb, 0, 3)
	waitFor(t, "stored", func() bool { return o.done() == 3 })
	k := &sink{}
	s.Attach(mb, k)
	waitFor(t, "first delivery", func() bool { return k.len() == 3 })
	for i := range 3 {
		s.Refuse(mb, 2, "bad "+strconv.Itoa(i))
		if i < 2 {
			waitFor(t, "redelivery of 2", func() bool { return k.len() >= 3+2*(i+1) })
		}
	}
	waitFor(t, "dead letter", func() bool { l, _, _ := s.DeadLetters("w", 10); return len(l) == 1 })
	l, total, _ := s.DeadLetters("", 10)
	if total != 1 || l[0].Sequence != 2 || !bytes.Equal(l[0].Event, ev(1)) || l[0].Reason != "refused 3 times: bad 2" {
		t.Fatalf("dead letters %+v (total %d)", l, total)
	}
	waitFor(t, "delivery after the dead letter", func() bool { k.mu.Lock(); defer k.mu.Unlock(); return k.seqs[len(k.seqs)-1] == 3 })
	k.mu.Lock()
	if !k.rewound[3] {
		t.Errorf("the redelivery after a refusal is not marked rewound: %v %v", k.seqs, k.rewound)
	}
	k.mu.Unlock()
	if n, err := s.Redrive("w", 0, -1); n != 1 || err != nil {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	waitFor(t, "re-driven event delivered", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.seqs[len(k.seqs)-1] == 4 && bytes.Equal(k.events[len(k.events)-1], ev(1))
	})
	if l, _, _ := s.DeadLetters("", 10); len(l) != 0 {
		t.Fatalf("dead letters after re-drive: %+v", l)
	}
}

// TestStoreFull: a mailbox refuses events past its unacknowledged
// limit (it never drops unprocessed events for room), and takes them
// again once some are acknowledged, dropping acknowledged ones.
func TestStoreFull(t *testing.T) {
	s, o := open(t, testdir.New(t), func(c *Config) { c.Retention.MaxEvents = 10 })
	defer s.Close()
	mb, _ := s.Declare("f", -1)
	appendN(t, s, mb, 0, 10)
	err := s.Append(mb, ev(10), 10, nil)
	if _, ok := err.(*FullError); !ok {
		t.Fatalf("11th event: %v, want a FullError", err)
	}
	want := "Limit reached: durable mailbox f holds 10 unprocessed events (DurableMaxEvents); its receiver must catch up first"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	waitFor(t, "stored", func() bool { return o.done() == 10 })
	s.Ack(mb, 5)
	appendN(t, s, mb, 10, 5)
	if err := s.Append(mb, ev(15), 15, nil); err == nil {
		t.Fatal("16th event with 5 acknowledged: no error")
	}
	waitFor(t, "stored", func() bool { return o.done() == 15 })
	// Whole writes are deleted, once acknowledged: ack them all.
	s.Ack(mb, 10)
	appendN(t, s, mb, 15, 1)
	// Every acknowledged write goes, not only enough to be under the
	// limit: wait for the last of them (the deletes are asynchronous).
	waitFor(t, "evicted", func() bool { i := s.Info(mb); return i.FirstSequence >= 11 })
	if i := s.Info(mb); i.FirstSequence != 11 || i.LastSequence != 16 {
		t.Fatalf("after eviction %+v", i)
	}
}

// TestStoreMailboxLimits: the number of mailboxes, in total and per user.
func TestStoreMailboxLimits(t *testing.T) {
	s, _ := open(t, testdir.New(t), func(c *Config) { c.MaxMailboxes = 3; c.MaxMailboxesPerUID = 2 })
	defer s.Close()
	for i := range 2 {
		if _, err := s.Declare(fmt.Sprint("u", i), 1000); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Declare("u2", 1000); err == nil || err.Error() != "Limit reached: 2 durable mailboxes per user (DurableMaxMailboxesPerUid) for uid 1000" {
		t.Fatalf("third of uid 1000: %v", err)
	}
	if _, err := s.Declare("c", -1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Declare("d", -1); err == nil || err.Error() != "Limit reached: 3 durable mailboxes (DurableMaxMailboxes); an operator must raise it or remove mailboxes" {
		t.Fatalf("fourth: %v", err)
	}
}
