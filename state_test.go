package statebus_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/protocol"
)

// TestSetState: a client's state reaches the registry; one too long is
// refused before it is sent, one with a line break by the service.
func TestSetState(t *testing.T) {
	srv := bustest.Start(t, nil)
	c := dial(t, srv, "ping")
	ctx := context.Background()
	if err := c.SetState(ctx, "#ping.pinging"); err != nil {
		t.Fatal(err)
	}
	ms, err := c.Machines(ctx)
	if err != nil || len(ms) != 1 || ms[0].State != "#ping.pinging" {
		t.Fatalf("Machines: %+v, %v", ms, err)
	}
	if err := c.SetState(ctx, strings.Repeat("x", statebus.MaxStateBytes+1)); err == nil || !strings.Contains(err.Error(), "at most 256 bytes") {
		t.Fatalf("long state: %v", err)
	}
	var pe *protocol.Error
	if err := c.SetState(ctx, "a\nb"); !errors.As(err, &pe) || pe.Text != "State must not contain control, invisible or bidirectional-control characters" {
		t.Fatalf("state with a line break: %v", err)
	}
}
