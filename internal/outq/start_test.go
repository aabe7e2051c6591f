package outq

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func running(q *Queue[int]) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// With Start, a writer runs only while there is something to write: none
// before the first line, one that writes it, none again once it has been
// idle for idleAfter (holding no buffers then), and a new one for the next
// line.
func TestStartWriterOnlyWhileNeeded(t *testing.T) {
	defer func(d time.Duration) { idleAfter = d }(idleAfter)
	idleAfter = 5 * time.Millisecond
	q := New[int](0)
	g := &gate{open: make(chan struct{})}
	close(g.open)
	q.Start(g)
	if running(q) {
		t.Fatal("a writer runs with nothing queued")
	}
	for round := range 3 {
		for i := range 3 {
			if err := appendLine(t, q, "line\n", i); err != nil {
				t.Fatal(err)
			}
		}
		n := uint64(15 * (round + 1))
		waitFor(t, "the lines to be written", func() bool { return q.BytesWritten() == n })
		waitFor(t, "the idle writer to exit", func() bool { return !running(q) })
		q.mu.Lock()
		for p := range q.lanes {
			if q.lanes[p].buf != nil || q.lanes[p].recs != nil {
				t.Errorf("round %d: an idle queue holds lane %d's buffers", round, p)
			}
		}
		q.mu.Unlock()
	}
	q.Close()
	if err := q.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Close lets the writer write what is queued; Wait waits for it.
func TestStartCloseWritesQueued(t *testing.T) {
	q := New[int](0)
	g := &gate{open: make(chan struct{})}
	q.Start(g)
	for i := range 10 {
		if err := appendLine(t, q, "line\n", i); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	waited := make(chan error)
	go func() { waited <- q.Wait() }()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned (%v) before the writer wrote", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(g.open)
	if err := <-waited; err != nil || g.buf.Len() != 50 {
		t.Fatalf("Wait: %v, %d bytes written", err, g.buf.Len())
	}
	// A queue closed with no writer running does not wait.
	q = New[int](0)
	q.Start(g)
	q.Close()
	if err := q.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A write error closes the queue, fails its records and reaches Stopped
// and Wait.
func TestStartWriteError(t *testing.T) {
	q := New[int](0)
	boom := errors.New("boom")
	g := &gate{open: make(chan struct{}), err: boom}
	stopped := make(chan error, 1)
	q.Stopped = func(err error) { stopped <- err }
	var mu sync.Mutex
	var failed []int
	q.Failed = func(r []int, err error) {
		mu.Lock()
		failed = append(failed, r...)
		mu.Unlock()
	}
	q.Start(g)
	for i := range 3 {
		appendLine(t, q, "line\n", i)
	}
	close(g.open)
	if err := <-stopped; err != boom {
		t.Fatalf("Stopped got %v", err)
	}
	if err := q.Wait(); err != boom {
		t.Fatalf("Wait: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 3 {
		t.Fatalf("%d records failed, want 3", len(failed))
	}
	if _, err := q.BeginNoWait(); err != ErrClosed {
		t.Fatalf("Begin after a write error: %v", err)
	}
}

// Lines queued while the writer decides to exit are never left behind:
// producers that pause about as long as idleAfter race the writer's exit,
// and every line is written.
func TestStartExitRace(t *testing.T) {
	defer func(d time.Duration) { idleAfter = d }(idleAfter)
	idleAfter = time.Millisecond
	q := New[int](0)
	g := &gate{open: make(chan struct{})}
	close(g.open)
	q.Start(g)
	var wg sync.WaitGroup
	const producers, lines = 4, 300
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(p), 1))
			for i := range lines {
				b, err := q.Begin(5, 0, nil)
				if err != nil {
					t.Error(err)
					return
				}
				q.CommitRec(append(b, "line\n"...), i)
				if r.IntN(4) == 0 {
					time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond) // around idleAfter
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every line to be written", func() bool { return q.BytesWritten() == producers*lines*5 })
	q.Close()
	if err := q.Wait(); err != nil {
		t.Fatal(err)
	}
}
