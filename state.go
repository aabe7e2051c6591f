package statebus

import (
	"context"
	"fmt"

	"github.com/statebus/statebus/protocol"
)

// MaxStateBytes is the longest state SetState takes.
const MaxStateBytes = protocol.MaxStateBytes

// SetState records state next to the client's machine id in the service's
// registry (a statebus extension): Machines, `statebus machines` and the
// monitoring endpoint's /machines show it as State. An empty state clears
// it. It waits for the service's answer. The registry forgets it when the
// id is unregistered or the connection is lost; after a reconnection, set
// it again (package orchestrator does). A state longer than MaxStateBytes,
// or with control or invisible characters, is refused.
func (c *Client) SetState(ctx context.Context, state string) error {
	if len(state) > MaxStateBytes {
		return fmt.Errorf("statebus: a state is at most %d bytes, %q is %d", MaxStateBytes, state[:32]+"...", len(state))
	}
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	seq := c.seq.Add(1)
	_, err = s.call(ctx, seq, protocol.AppendSetState(nil, seq, c.id, state), false)
	return err
}
