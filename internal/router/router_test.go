package router

import (
	"errors"
	"testing"
	"time"

	"github.com/statebus/statebus/protocol"
)

func TestOwnership(t *testing.T) {
	tb := New[int]()
	now := time.Now()
	if err := tb.Register(1, Info{MachineID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.Lookup([]byte("a")); ok {
		t.Fatal("registered but not subscribed id must not route")
	}
	if err := tb.Register(2, Info{MachineID: "a"}); !errors.Is(err, protocol.ErrIDInUse) ||
		err.Error() != "Machine id already in use: a" {
		t.Fatalf("hijack by register: %v", err)
	}
	if _, err := tb.Subscribe(2, Info{MachineID: "a"}, now); !errors.Is(err, protocol.ErrIDInUse) {
		t.Fatalf("hijack by subscribe: %v", err)
	}
	if created, err := tb.Subscribe(1, Info{MachineID: "a"}, now); err != nil || created {
		t.Fatalf("subscribe own id: %v %v", created, err)
	}
	if o, ok := tb.Lookup([]byte("a")); !ok || o.Owner != 1 || o.ID != "a" {
		t.Fatalf("lookup a = %v %v", o, ok)
	}
	if created, err := tb.Subscribe(2, Info{MachineID: "b"}, now); err != nil || !created {
		t.Fatalf("subscribe registers: %v %v", created, err)
	}
	if _, err := tb.Unregister(2, "a"); !errors.Is(err, protocol.ErrNotOwner) {
		t.Fatalf("unregister other's id: %v", err)
	}
	if got := tb.AppendSubscribed(nil, []byte("a")); len(got) != 1 || got[0] != (Route[int]{2, "b"}) {
		t.Fatalf("broadcast set = %v", got)
	}
	tb.Drop(1, []string{"a", "b"}) // b is not 1's: stays
	if tb.Len() != 1 {
		t.Fatalf("len after drop = %d", tb.Len())
	}
	if err := tb.Register(3, Info{MachineID: "a"}); err != nil {
		t.Fatalf("id free after drop: %v", err)
	}
	snap := tb.Snapshot()
	if len(snap) != 2 || snap[0].MachineID != "a" || !snap[1].Subscribed {
		t.Fatalf("snapshot %+v", snap)
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := New[int]()
	for i := 0; i < 1000; i++ {
		tb.Subscribe(i, Info{MachineID: "machine-" + string(rune('a'+i%26)) + string(rune(i))}, time.Now())
	}
	tb.Subscribe(5000, Info{MachineID: "target"}, time.Now())
	id := []byte("target")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := tb.Lookup(id); !ok {
				b.Fatal("miss")
			}
		}
	})
}

func TestGroups(t *testing.T) {
	tb := New[int]()
	now := time.Now()
	for i, id := range []string{"w1", "w2", "w3"} {
		tb.Subscribe(i+1, Info{MachineID: id}, now)
		if _, err := tb.Join(i+1, "workers", id); err != nil {
			t.Fatal(err)
		}
	}
	tb.Register(9, Info{MachineID: "unsubscribed"})
	if _, err := tb.Join(9, "workers", "unsubscribed"); err == nil {
		t.Fatal("an id that is not subscribed joined")
	}
	if _, err := tb.Join(2, "workers", "w1"); err == nil {
		t.Fatal("joined with another owner's id")
	}
	seen := map[string]int{}
	for range 30 {
		m, first := tb.Members([]byte("workers"))
		seen[m[first].ID]++
	}
	if seen["w1"] != 10 || seen["w2"] != 10 || seen["w3"] != 10 {
		t.Fatalf("round robin %v", seen)
	}
	tb.Drop(2, []string{"w2"})
	if left, err := tb.Leave(3, "workers", "w3"); !left || err != nil {
		t.Fatalf("Leave: %v %v", left, err)
	}
	if left, _ := tb.Leave(3, "workers", "w3"); left {
		t.Fatal("left twice")
	}
	if m, _ := tb.Members([]byte("workers")); len(m) != 1 || m[0].ID != "w1" {
		t.Fatalf("members after leaving %v", m)
	}
	if n, err := tb.Unregister(1, "w1"); n != 1 || err != nil {
		t.Fatalf("Unregister: %d groups, %v", n, err)
	}
	if m, _ := tb.Members([]byte("workers")); m != nil {
		t.Fatalf("empty group still has %v", m)
	}
}
