package statebus_test

import (
	"context"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// TestHandlersBeforeDial: handlers given to Dial are in place before the
// id is registered: an event and a request sent as soon as the id is
// listed, before Dial returns, are handled.
func TestHandlersBeforeDial(t *testing.T) {
	srv := bustest.Start(t, nil)
	sender := dial(t, srv, "sender")
	got := make(chan statebus.Event, 1)
	answered := make(chan error, 1)
	go func() {
		// Send the moment "late" is subscribed, racing its Dial.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if err := sender.SendEvent(context.Background(), "late", "HELLO", nil); err == nil {
				_, err := sender.Request(context.Background(), "late", "ASK", nil)
				answered <- err
				return
			}
		}
		answered <- context.DeadlineExceeded
	}()
	c, err := statebus.Dial(context.Background(), "late", statebus.WithPipeName(srv.Addr()),
		statebus.WithHandler("HELLO", func(e statebus.Event) { got <- e }),
		statebus.WithRequestHandler("ASK", func(context.Context, statebus.Event) (any, error) { return "yes", nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-answered; err != nil {
		t.Fatalf("request: %v", err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("HELLO was not handled")
	}
}
