package router

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/statebus/statebus/protocol"
)

// group is a set of subscribed machine ids that share a name: an event
// sent to the group goes to one member, chosen round-robin.
//
// Joining and leaving change the map, in constant time, under the
// table's write lock; the member list that routing reads without a lock
// is rebuilt once, on the next lookup after a change. So a connection
// that leaves many groups (or one group many times) costs time in
// proportion to its memberships, not to the groups' sizes.
type group[O comparable] struct {
	members map[string]member[O] // t.mu
	seq     uint64               // join order, t.mu
	next    atomic.Uint64
	list    atomic.Pointer[[]Route[O]] // nil: rebuild on the next lookup
	build   sync.Mutex
}

type member[O comparable] struct {
	route Route[O]
	seq   uint64
}

// Join adds id, which owner must hold and have subscribed, to group. It
// reports whether id was not a member yet.
func (t *Table[O]) Join(owner O, groupName, id string) (added bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok || e.owner != owner || !e.info.Subscribed {
		return false, protocol.ErrNotOwner.New(id)
	}
	if slices.Contains(e.groups, groupName) {
		return false, nil
	}
	g := t.groups[groupName]
	if g == nil {
		g = &group[O]{members: make(map[string]member[O])}
		t.groups[groupName] = g
	}
	g.seq++
	g.members[e.info.MachineID] = member[O]{Route[O]{owner, e.info.MachineID}, g.seq}
	g.list.Store(nil)
	e.groups = append(e.groups, groupName)
	return true, nil
}

// Leave removes id from group if owner holds it, and reports whether id
// was a member.
func (t *Table[O]) Leave(owner O, groupName, id string) (left bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok || e.owner != owner {
		return false, protocol.ErrNotOwner.New(id)
	}
	if i := slices.Index(e.groups, groupName); i >= 0 {
		e.groups = slices.Delete(e.groups, i, i+1)
		t.leave(groupName, id)
		return true, nil
	}
	return false, nil
}

// IsMember reports whether id is a member of group.
func (t *Table[O]) IsMember(groupName, id string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	g := t.groups[groupName]
	if g == nil {
		return false
	}
	_, ok := g.members[id]
	return ok
}

// leave drops id from a group's members; t.mu is held.
func (t *Table[O]) leave(groupName, id string) {
	g := t.groups[groupName]
	if g == nil {
		return
	}
	delete(g.members, id)
	g.list.Store(nil)
	if len(g.members) == 0 {
		delete(t.groups, groupName)
	}
}

// Members returns a group's members in the order they joined, rotated so
// that the member whose turn it is comes first. The slice must not be
// modified.
func (t *Table[O]) Members(groupName []byte) (members []Route[O], first int) {
	t.mu.RLock()
	g := t.groups[string(groupName)]
	if g != nil {
		members = g.routes()
	}
	t.mu.RUnlock()
	if len(members) == 0 {
		return nil, 0
	}
	return members, int((g.next.Add(1) - 1) % uint64(len(members)))
}

// routes returns the member list, rebuilding it after a change; t.mu is
// held for reading, so the map does not change meanwhile.
func (g *group[O]) routes() []Route[O] {
	if l := g.list.Load(); l != nil {
		return *l
	}
	g.build.Lock()
	defer g.build.Unlock()
	if l := g.list.Load(); l != nil {
		return *l
	}
	ms := make([]member[O], 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b member[O]) int { return cmp.Compare(a.seq, b.seq) })
	l := make([]Route[O], len(ms))
	for i, m := range ms {
		l[i] = m.route
	}
	g.list.Store(&l)
	return l
}
