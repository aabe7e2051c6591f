package statebus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/statebus/statebus/protocol"
)

// HealthStatus is the service's health: the original's GetHealthStatus
// fields (IsHealthy, ConnectionCount, RegisteredMachines, LastActivityAt)
// plus uptime and peak connections.
type HealthStatus = protocol.HealthStatus

// MachineInfo is one registered machine: what its client claimed, and what
// the kernel says about the connection it lives on.
type MachineInfo = protocol.MachineInfo

// Health asks the service for its health status (a statebus extension).
func (c *Client) Health(ctx context.Context) (HealthStatus, error) {
	var h HealthStatus
	return h, c.query(ctx, protocol.Health, &h)
}

// Machines asks the service for its registry (a statebus extension).
func (c *Client) Machines(ctx context.Context) ([]MachineInfo, error) {
	var m []MachineInfo
	return m, c.query(ctx, protocol.Machines, &m)
}

func (c *Client) query(ctx context.Context, t protocol.MessageType, v any) error {
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	seq := c.seq.Add(1)
	line := fmt.Appendf(nil, `{"Type":%d,"Id":%d}`+"\n", int(t), seq)
	data, err := s.call(ctx, seq, line, true)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("statebus: cannot read the service's %v response: %w", t, err)
	}
	return nil
}

// Health connects without registering a machine id, asks the service for
// its health status and disconnects: what a monitoring tool needs.
func Health(ctx context.Context, opts ...Option) (HealthStatus, error) {
	c, err := dial(ctx, "", opts)
	if err != nil {
		return HealthStatus{}, err
	}
	defer c.Close()
	return c.Health(ctx)
}

// Machines connects without registering a machine id, asks the service
// for its registry and disconnects.
func Machines(ctx context.Context, opts ...Option) ([]MachineInfo, error) {
	c, err := dial(ctx, "", opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Machines(ctx)
}
