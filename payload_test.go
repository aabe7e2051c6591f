package statebus_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/protocol"
)

// A json.RawMessage nested deeper than the service's limit is refused as
// too deep, naming the limit, not as invalid JSON.
func TestRawPayloadTooDeep(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "a", statebus.WithFraming(statebus.FramingJSON))
	dial(t, srv, "b")
	deep := json.RawMessage(strings.Repeat("[", 70) + strings.Repeat("]", 70))
	err := a.SendEvent(ctx(t), "b", "E", deep)
	if !errors.Is(err, protocol.ErrTooDeep) || !strings.Contains(err.Error(), "more than 62 levels deep") ||
		!strings.Contains(err.Error(), "64 levels in a line") {
		t.Errorf("got %v", err)
	}
	// On the compact framing, the service says so.
	c := dial(t, srv, "c")
	if err := c.SendEvent(ctx(t), "b", "E", deep); !errors.Is(err, protocol.ErrTooDeep) {
		t.Errorf("compact: got %v", err)
	}
}
