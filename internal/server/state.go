package server

import "github.com/statebus/statebus/protocol"

// setState answers SetState (a statebus extension): the connection that
// holds an id records a short text for it in the registry, which Machines
// and /machines show. What it costs the service is bounded per id
// (protocol.MaxStateBytes, replaced on every set), so it counts within the
// connection's MaxIdsPerConnection; a connection that floods SetState is
// slowed down by its own responses, as with any request.
func (c *conn) setState(r *protocol.Request) error {
	var p protocol.StatePayload
	if err := protocol.DecodeState(r.Payload, &p); err != nil {
		return err
	}
	if err := c.srv.routes.SetState(c, p.MachineID, p.State); err != nil {
		return err
	}
	c.reply(nil, r.ID)
	return nil
}
