package statebus

import (
	"context"
	"encoding/json"
	"fmt"
)

// Ack is what the service acknowledged for one event (SendEventAck).
type Ack struct {
	// Target is the machine the event was written to: the member of a
	// "@group", the machine a routing rule redirected it to, or the target
	// as sent ("*", "@group:*" for fan-out).
	Target string `json:"TargetMachineId"`
	// Recipients is how many machines got a fan-out event ("*",
	// "@group:*"); nil for an event to one machine.
	Recipients *int `json:"Recipients,omitempty"`
	// Stored says the target is durable: the event was stored in its
	// mailbox as Sequence (on stable storage under the service's default
	// DurableSync), not yet delivered (docs/durability.md).
	Stored   bool   `json:"Stored,omitempty"`
	Sequence uint64 `json:"Sequence,omitempty"`
}

// SendEventAck is SendEvent that also returns the service's
// acknowledgement: which machine the event actually reached, or for a
// broadcast how many did (possibly 0).
func (c *Client) SendEventAck(ctx context.Context, target, name string, payload any, opts ...SendOption) (Ack, error) {
	data, err := c.send(ctx, c.id, target, name, payload, sendAckData, opts)
	if err != nil {
		return Ack{}, err
	}
	a := Ack{Target: target}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &a); err != nil {
			return Ack{Target: target}, fmt.Errorf("statebus: cannot read the acknowledgement %s: %w", data, err)
		}
	}
	return a, nil
}
