package statebus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

func TestRequestReply(t *testing.T) {
	srv := bustest.Start(t, nil)
	caller := dial(t, srv, "caller")
	svc := dial(t, srv, "calc")
	svc.HandleRequest("ADD", func(ctx context.Context, e statebus.Event) (any, error) {
		var in struct{ A, B int }
		if err := e.Decode(&in); err != nil {
			return nil, err
		}
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("the caller's deadline did not travel")
		}
		return map[string]int{"Sum": in.A + in.B}, nil
	})
	svc.HandleRequest("FAIL", func(context.Context, statebus.Event) (any, error) {
		return nil, errors.New("cannot do that")
	})
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := caller.Request(rctx, "calc", "ADD", map[string]int{"A": 2, "B": 3})
	if err != nil {
		t.Fatal(err)
	}
	// The reply carries no source or time on the wire: none is made up.
	if string(rep.Payload) != `{"Sum":5}` || rep.Source != "" || !rep.Timestamp.IsZero() || rep.Name != "ADD" || rep.Target != "caller" {
		t.Fatalf("reply %+v", rep)
	}
	// The responder's errors are told apart from the service's.
	_, err = caller.Request(rctx, "calc", "FAIL", nil)
	var re *statebus.ResponderError
	if !errors.As(err, &re) || !errors.Is(err, statebus.ErrResponder) || re.Message != "cannot do that" ||
		err.Error() != "Responder error: cannot do that" || errors.Is(err, statebus.ErrNoResponder) {
		t.Fatalf("handler error: %v (%#v)", err, err)
	}
	_, err = caller.Request(rctx, "calc", "NOPE", nil)
	if !errors.As(err, &re) || re.Message != "No handler for request NOPE" {
		t.Fatalf("no handler: %v", err)
	}
	// No responder fails at once, not after the timeout.
	start := time.Now()
	_, err = caller.Request(rctx, "nobody", "ADD", nil)
	if !errors.Is(err, statebus.ErrNoResponder) || errors.Is(err, statebus.ErrResponder) || err.Error() != "No responder: nobody is not connected" {
		t.Fatalf("no responder: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("no responder took %v", time.Since(start))
	}
	// Many at once.
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			rep, err := caller.Request(rctx, "calc", "ADD", map[string]int{"A": i, "B": 1})
			if err == nil && string(rep.Payload) != fmt.Sprintf(`{"Sum":%d}`, i+1) {
				err = fmt.Errorf("reply %s for %d", rep.Payload, i)
			}
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestRequestResponderLeaves: the target disconnects before replying; the
// caller hears at once.
func TestRequestResponderLeaves(t *testing.T) {
	srv := bustest.Start(t, nil)
	caller := dial(t, srv, "caller")
	svc := dial(t, srv, "svc")
	started := make(chan struct{})
	release := make(chan struct{})
	svc.HandleRequest("SLOW", func(ctx context.Context, e statebus.Event) (any, error) {
		close(started)
		<-release
		return nil, nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := caller.Request(ctx(t), "svc", "SLOW", nil)
		done <- err
	}()
	<-started
	go svc.Close() // does not wait for the running handler
	select {
	case err := <-done:
		if !errors.Is(err, statebus.ErrNoResponder) || err.Error() != "No responder: svc disconnected before replying" {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("caller not told the responder left")
	}
	close(release)
}

// TestRequestExpiredWorkSkipped: a request whose caller's deadline passed
// before the handler could run is not handled.
func TestRequestExpiredWorkSkipped(t *testing.T) {
	srv := bustest.Start(t, nil)
	caller := dial(t, srv, "caller")
	svc := dial(t, srv, "svc")
	block := make(chan struct{})
	svc.OnEvent("BLOCK", func(statebus.Event) { <-block })
	ran := make(chan struct{}, 1)
	svc.HandleRequest("WORK", func(context.Context, statebus.Event) (any, error) {
		ran <- struct{}{}
		return nil, nil
	})
	caller.SendEvent(ctx(t), "svc", "BLOCK", nil) // svc's dispatcher is busy
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := caller.Request(short, "svc", "WORK", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(block)
	// A later request runs; the expired one was skipped.
	if _, err := caller.Request(ctx(t), "svc", "WORK", nil); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 {
		t.Fatalf("handler ran %d times, want 1 (the expired request skipped)", len(ran))
	}
}
