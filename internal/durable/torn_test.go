package durable

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/testdir"
)

// TestTornWrite cuts the store's last record at every byte offset, as a
// crash in the middle of a write would leave it, and reopens the store
// each time: the cut write is gone, everything before it is intact, and
// the mailbox takes new events from the sequence after the last intact
// one.
func TestTornWrite(t *testing.T) {
	dir := testdir.New(t)
	s, o := open(t, dir, nil)
	mb, _ := s.Declare("t", -1)
	for i := range 5 {
		appendN(t, s, mb, i, 1)
		waitFor(t, "stored", func() bool { return o.done() == i+1 })
	}
	blks, err := s.BlockFiles()
	if err != nil || len(blks) != 1 {
		t.Fatalf("block files %v, %v", blks, err)
	}
	st, _ := os.Stat(blks[0])
	before := st.Size()
	appendN(t, s, mb, 5, 1)
	waitFor(t, "stored", func() bool { return o.done() == 6 })
	st, _ = os.Stat(blks[0])
	after := st.Size()
	s.Close()
	if after <= before {
		t.Fatalf("block file did not grow: %d -> %d", before, after)
	}
	rel, _ := filepath.Rel(dir, blks[0])
	t.Logf("last record: bytes %d to %d of %s", before, after, rel)
	for off := before; off <= after; off++ {
		cut := filepath.Join(testdir.New(t), "s")
		if err := testdir.CopyDir(dir, cut); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(cut, rel), off); err != nil {
			t.Fatal(err)
		}
		s, o := open(t, cut, nil)
		mb := s.Lookup([]byte("t"))
		want := uint64(5)
		if off == after {
			want = 6
		}
		if mb == nil {
			t.Fatalf("cut at %d: mailbox lost", off)
		}
		if i := s.Info(mb); i.LastSequence != want || i.FirstSequence != 1 {
			t.Fatalf("cut at %d: recovered %+v, want events 1 to %d", off, i, want)
		}
		got, _, err := s.Read(mb, 1, time.Time{}, 100, 1<<20)
		if err != nil || uint64(len(got)) != want {
			t.Fatalf("cut at %d: read %d events, %v", off, len(got), err)
		}
		for i, e := range got {
			if !bytes.Equal(e.Event, ev(i)) {
				t.Fatalf("cut at %d: event %d is %q, want %q", off, i+1, e.Event, ev(i))
			}
		}
		appendN(t, s, mb, 100, 1)
		waitFor(t, "stored after recovery", func() bool { return o.done() == 1 })
		if o.seqs[100] != want+1 || o.errs[100] != nil {
			t.Fatalf("cut at %d: new event got sequence %d (%v), want %d", off, o.seqs[100], o.errs[100], want+1)
		}
		s.Close()
		if err := testdir.RemoveAll(cut); err != nil {
			t.Fatal(err)
		}
	}
}
