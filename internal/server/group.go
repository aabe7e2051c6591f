package server

import (
	"context"
	"errors"

	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

// toGroup routes an event (or request) sent to "@group": to one member,
// round-robin, passing over members whose queue is full, or with
// "@group:*" to every member but the sender.
func (c *conn) toGroup(r *protocol.Request, group []byte, all bool) error {
	members, first := c.srv.routes.Members(group)
	if c.srv.fed != nil {
		if all && !r.IsRequest {
			return c.toAll(r, members)
		}
		if !all {
			if remote, turn := c.srv.fed.GroupMembers(string(group), nil); len(remote) > 0 {
				return c.toGroupFederated(r, group, members, remote, turn)
			}
		}
	}
	if len(members) == 0 {
		if r.IsRequest {
			return protocol.ErrNoResponder.New(string(r.Event.Target) + " has no members")
		}
		return protocol.ErrTargetNotConnected.New(string(r.Event.Target))
	}
	if all {
		if r.IsRequest {
			return protocol.Required("TargetMachineId (one machine or group, not all members, for a request)")
		}
		return c.toAll(r, members)
	}
	for i := range members {
		err := c.toMember(members[(first+i)%len(members)], r, false)
		if err == nil || !errors.Is(err, protocol.ErrSlowConsumer) && !errors.Is(err, protocol.ErrTargetNotConnected) {
			return err
		}
	}
	// Every member is full: wait for the one whose turn it is.
	return c.toMember(members[first], r, true)
}

func (c *conn) toMember(m router.Route[*conn], r *protocol.Request, wait bool) error {
	if r.IsRequest {
		return c.requestTo(m, r, wait)
	}
	return c.deliverOpt(m.Owner, m.ID, r, modeUnicast, 0, noDeadline, wait)
}

// toAll is broadcast within a group.
func (c *conn) toAll(r *protocol.Request, members []router.Route[*conn]) error {
	n := 0
	for _, m := range members {
		if m.ID == string(r.Event.Source) {
			continue
		}
		if err := c.deliver(m.Owner, m.ID, r, modeBroadcast); err == nil {
			n++
		} else {
			c.srv.countRefusal(err, 1)
		}
	}
	if c.srv.fed != nil {
		c.broadcastRemote(r, r.Event.Target, n)
		return nil
	}
	if !r.NoAck {
		c.sendLine(func(b []byte) []byte { return protocol.AppendAck(b, r.Event.Target, n, r.ID) })
	}
	return nil
}

// joinLeave handles JoinGroup and LeaveGroup.
func (c *conn) joinLeave(r *protocol.Request) error {
	var g protocol.GroupPayload
	if err := protocol.DecodeGroup(r.Payload, &g); err != nil {
		return err
	}
	id := g.MachineID
	if id == nil {
		if len(c.ids) != 1 {
			return protocol.Required("MachineId")
		}
		id = []byte(c.ids[0])
	}
	var err error
	if r.Type == protocol.JoinGroup {
		err = c.join(g.Group, string(id))
	} else {
		var left bool
		if left, err = c.srv.routes.Leave(c, g.Group, string(id)); left {
			c.memberships--
			if c.srv.fed != nil {
				c.srv.fed.Leave(g.Group, string(id))
			}
		}
	}
	if err != nil {
		return err
	}
	c.reply(nil, r.ID)
	return nil
}

// join adds one of c's ids to a group if the access rules let c's user
// join it and c is under MaxGroupsPerConnection. Only c's reader changes
// c's memberships, so c counts them itself.
func (c *conn) join(group, id string) error {
	if err := c.rule.MayJoin(group); err != nil {
		c.denied(err)
		return err
	}
	if max := c.srv.cfg.MaxGroupsPerConnection; c.memberships >= max {
		if c.held([]byte(id)) != "" && c.srv.routes.IsMember(group, id) {
			return nil // joining again is not an error
		}
		return limitErr(max, "group memberships per connection (MaxGroupsPerConnection); leave a group first")
	}
	added, err := c.srv.routes.Join(c, group, id)
	if added && c.srv.fed != nil {
		if err := c.srv.fed.Join(context.Background(), group, id); err != nil {
			c.srv.routes.Leave(c, group, id)
			return fedUnavailable(err)
		}
	}
	if added {
		c.memberships++
	}
	return err
}
