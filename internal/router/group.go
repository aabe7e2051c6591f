package router

import (
	"slices"
	"sync/atomic"

	"github.com/statebus/statebus/protocol"
)

// group is a set of subscribed machine ids that share a name: an event
// sent to the group goes to one member, chosen round-robin.
type group[O comparable] struct {
	members []Route[O]
	next    atomic.Uint64
}

// Join adds id, which owner must hold and have subscribed, to group.
// Joining twice is not an error.
func (t *Table[O]) Join(owner O, groupName, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok || e.owner != owner || !e.info.Subscribed {
		return protocol.ErrNotOwner.New(id)
	}
	if slices.Contains(e.groups, groupName) {
		return nil
	}
	g := t.groups[groupName]
	if g == nil {
		g = &group[O]{}
		t.groups[groupName] = g
	}
	// Copy on write: Members hands out the slice without the lock held.
	g.members = append(slices.Clip(g.members), Route[O]{owner, e.info.MachineID})
	e.groups = append(e.groups, groupName)
	return nil
}

// Leave removes id from group if owner holds it.
func (t *Table[O]) Leave(owner O, groupName, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok || e.owner != owner {
		return protocol.ErrNotOwner.New(id)
	}
	if i := slices.Index(e.groups, groupName); i >= 0 {
		e.groups = slices.Delete(e.groups, i, i+1)
		t.leave(groupName, id)
	}
	return nil
}

// leave drops id from a group's members; t.mu is held.
func (t *Table[O]) leave(groupName, id string) {
	g := t.groups[groupName]
	if g == nil {
		return
	}
	members := make([]Route[O], 0, len(g.members))
	for _, m := range g.members {
		if m.ID != id {
			members = append(members, m)
		}
	}
	if len(members) == 0 {
		delete(t.groups, groupName)
		return
	}
	g.members = members
}

// Members returns a group's members, rotated so that the member whose
// turn it is comes first. The slice must not be modified.
func (t *Table[O]) Members(groupName []byte) (members []Route[O], first int) {
	t.mu.RLock()
	g := t.groups[string(groupName)]
	if g != nil {
		members = g.members
	}
	t.mu.RUnlock()
	if len(members) == 0 {
		return nil, 0
	}
	return members, int((g.next.Add(1) - 1) % uint64(len(members)))
}
