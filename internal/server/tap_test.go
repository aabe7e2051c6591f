package server_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
)

type sink struct {
	mu  sync.Mutex
	got []string
}

func (s *sink) Offer(name, source, target []byte, size int) {
	s.mu.Lock()
	s.got = append(s.got, fmt.Sprintf("%s %s->%s %d", name, source, target, size))
	s.mu.Unlock()
}

func (s *sink) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// TestTap: an installed tap samples one accepted event in Every per
// connection, weighted, and gives its tail every accepted event a filter
// matches (refused events are not routed, so not seen); removed, it sees
// nothing. ConnStats counts per connection.
func TestTap(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")

	var mu sync.Mutex
	var samples []string
	tap := &server.Tap{Tail: router.NewWatches[server.TailSink](),
		Sample: func(name, source, target []byte, weight uint32) {
			mu.Lock()
			samples = append(samples, fmt.Sprintf("%s %s->%s x%d", name, source, target, weight))
			mu.Unlock()
		}}
	tap.SetEvery(5) // rounds down to 4
	if tap.Every() != 4 {
		t.Fatalf("Every %d, want 4", tap.Every())
	}
	tail := &sink{}
	tap.Tail.Add(&router.Watch[server.TailSink]{ID: 1, Owner: tail, Filter: router.Filter{EventName: "B*"}})
	srv.SetTap(tap)
	if !srv.Tapped() {
		t.Fatal("not tapped")
	}
	send := func(name string, target string) {
		a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"` + target + `","EventName":"` + name + `","Payload":[1,2]}}`)
		a.Read() // the acknowledgement or the error
	}
	for i := range 16 {
		send([]string{"A", "B1"}[i%2], "b")
		b.Read()
	}
	send("B2", "nobody") // refused: not routed
	mu.Lock()
	got := fmt.Sprint(samples)
	mu.Unlock()
	if want := "[B1 a->b x4 B1 a->b x4 B1 a->b x4 B1 a->b x4]"; got != want {
		t.Errorf("samples %s, want %s", got, want)
	}
	// The size is the event object's, as forwarded.
	want := fmt.Sprintf("B1 a->b %d", len(`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"B1","Payload":[1,2]}`))
	if got := tail.list(); len(got) != 8 || got[0] != want {
		t.Errorf("tail %q, want 8 of %q", got, want)
	}
	var ca, cb server.ConnStat
	for _, c := range srv.ConnStats() {
		switch c.Delivered {
		case 0:
			ca = c
		default:
			cb = c
		}
	}
	if ca.Received != 17 || cb.Delivered != 16 || cb.Received != 0 {
		t.Errorf("ConnStats: a %+v, b %+v", ca, cb)
	}

	if !srv.RemoveTap(tap) || srv.Tapped() || srv.RemoveTap(tap) {
		t.Fatal("RemoveTap")
	}
	for range 8 {
		send("B1", "b")
		b.Read()
	}
	if got := tail.list(); len(got) != 8 {
		t.Errorf("the tail saw %d events after the tap was removed", len(got)-8)
	}
}
