package statebus_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
)

// TestGroupBalance: 3 members share 30,000 events about equally.
func TestGroupBalance(t *testing.T) {
	srv := bustest.Start(t, nil)
	var counts [3]atomic.Int64
	var total atomic.Int64
	done := make(chan struct{})
	const n = 30000
	for i := range 3 {
		m := dial(t, srv, fmt.Sprintf("worker-%d", i))
		m.OnEvent("JOB", func(statebus.Event) {
			counts[i].Add(1)
			if total.Add(1) == n {
				close(done)
			}
		})
		if err := m.JoinGroup(ctx(t), "workers"); err != nil {
			t.Fatal(err)
		}
	}
	sender := dial(t, srv, "sender")
	for i := range n {
		if err := sender.PostEvent(ctx(t), "@workers", "JOB", i); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("delivered %d/%d", total.Load(), n)
	}
	for i := range counts {
		if c := counts[i].Load(); c < 9500 || c > 10500 {
			t.Errorf("worker-%d got %d, want 10,000 +/- 500", i, c)
		}
	}
	t.Logf("shares: %d %d %d", counts[0].Load(), counts[1].Load(), counts[2].Load())

	// "@workers:*" reaches every member.
	got := make(chan string, 3)
	for i := range 3 {
		m := dial(t, srv, fmt.Sprintf("all-%d", i))
		m.OnEvent("ALL", func(e statebus.Event) { got <- e.Target })
		m.JoinGroup(ctx(t), "everyone")
	}
	if err := sender.SendEvent(ctx(t), "@everyone:*", "ALL", nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if target := <-got; target != "@everyone:*" {
			t.Fatalf("target %q", target)
		}
	}
	if err := sender.SendEvent(ctx(t), "@nobody", "ALL", nil); !errors.Is(err, statebus.ErrTargetNotConnected) {
		t.Fatalf("empty group: %v", err)
	}
}

// TestGroupMemberDies: one of 3 members dies mid-run; its share goes to the
// other two and nothing is lost. The sender uses requests, so a job whose
// member died before answering comes back as ErrNoResponder and is sent
// again (to a live member).
func TestGroupMemberDies(t *testing.T) {
	srv := bustest.Start(t, nil)
	const n = 30000
	handled := make([]atomic.Int32, n) // answers per job
	var perMember [3]atomic.Int64
	for i := range 2 {
		m := dial(t, srv, fmt.Sprintf("worker-%d", i))
		m.HandleRequest("JOB", func(_ context.Context, e statebus.Event) (any, error) {
			perMember[i].Add(1)
			return e.Payload, nil
		})
		m.JoinGroup(ctx(t), "workers")
	}
	// The third member is a raw connection, so the test can kill it
	// abruptly after it has answered 3,000 jobs.
	victim, err := busaddr.Dial(context.Background(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	fmt.Fprintf(victim, `{"Type":3,"Payload":"worker-2"}`+"\n"+`{"Type":103,"Id":1,"Payload":{"Group":"workers"}}`+"\n")
	vr := bufio.NewReader(victim)
	vr.ReadString('\n')
	if line, _ := vr.ReadString('\n'); line != `{"Success":true,"Data":null,"Error":null,"Id":1}`+"\n" {
		t.Fatalf("join: %q", line)
	}
	replyTo := regexp.MustCompile(`"ReplyTo":(\d+)`)
	go func() {
		for {
			line, err := vr.ReadString('\n')
			if err != nil {
				return
			}
			if perMember[2].Add(1) > 3000 {
				victim.Close() // dies with requests unanswered
				return
			}
			tok := replyTo.FindStringSubmatch(line)[1]
			fmt.Fprintf(victim, `{"Type":102,"Payload":{"ReplyTo":%s,"Payload":1}}`+"\n", tok)
		}
	}()

	sender := dial(t, srv, "sender")
	var retried atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 32 { // concurrent callers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				for {
					_, err := sender.Request(ctx(t), "@workers", "JOB", j)
					if err == nil {
						handled[j].Add(1)
						break
					}
					if !errors.Is(err, statebus.ErrNoResponder) {
						t.Error(err)
						return
					}
					retried.Add(1)
				}
			}
		}()
	}
	for j := range n {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	for j := range n {
		if handled[j].Load() != 1 {
			t.Fatalf("job %d answered %d times", j, handled[j].Load())
		}
	}
	t.Logf("worker-0 %d, worker-1 %d, worker-2 (killed) %d; %d jobs sent again after it died",
		perMember[0].Load(), perMember[1].Load(), perMember[2].Load()-1, retried.Load())
	if retried.Load() == 0 || perMember[0].Load()+perMember[1].Load() < n-3000 {
		t.Fatalf("the survivors did not take over: %d + %d", perMember[0].Load(), perMember[1].Load())
	}
}
