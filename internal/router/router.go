// Package router decides who gets an event: it maps machine ids to the
// connection (the owner) that holds them. It is pure logic with no I/O, so
// the rules (one live owner per id, routing only to subscribed ids) are
// tested without sockets.
package router

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/protocol"
)

// Info is what the registry records about a machine id.
type Info struct {
	// MachineID is the registered id.
	MachineID string
	// ProcessName and ProcessID are what the client claimed in Register.
	ProcessName string
	ProcessID   int64
	// RegisteredAt is when the service registered the id.
	RegisteredAt time.Time
	// Subscribed is true once the id receives events; SubscribedAt says
	// since when.
	Subscribed   bool
	SubscribedAt time.Time
	// Conn identifies the connection the id lives on; PeerPID, PeerUID and
	// PeerGID are that connection's credentials as the kernel reports them
	// (-1 when unknown).
	Conn        uint64
	ConnectedAt time.Time
	PeerPID     int
	PeerUID     int
	PeerGID     int
	// State is what the owner last set with SetState; "" when never set.
	State string
	// PeerCert is the name of a TLS peer's certificate; PeerAddr a TCP
	// peer's address. Both are "" on the Unix socket.
	PeerCert string
	PeerAddr string
	// PeerSID is a Windows pipe client's user SID; "" elsewhere.
	PeerSID string
}

type entry[O comparable] struct {
	owner  O
	info   Info
	groups []string               // groups the id is a member of
	state  atomic.Pointer[string] // see SetState
}

// Table is the registry and routing table. The zero value is not usable;
// call New. It is safe for concurrent use: lookups take a read lock, so
// routing runs in parallel and only registration changes serialize.
type Table[O comparable] struct {
	mu     sync.RWMutex
	m      map[string]*entry[O]
	groups map[string]*group[O]
}

// New returns an empty table.
func New[O comparable]() *Table[O] {
	return &Table[O]{m: make(map[string]*entry[O]), groups: make(map[string]*group[O])}
}

// Register records info.MachineID as held by owner. It fails with
// protocol.ErrIDInUse while another owner holds the id; registering an id
// the owner already holds updates the claimed process details.
func (t *Table[O]) Register(owner O, info Info) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[info.MachineID]
	if ok {
		if e.owner != owner {
			return protocol.ErrIDInUse.New(info.MachineID)
		}
		e.info.ProcessName, e.info.ProcessID = info.ProcessName, info.ProcessID
		return nil
	}
	t.m[info.MachineID] = &entry[O]{owner: owner, info: info}
	return nil
}

// Subscribe makes id routable to owner, registering it first with info
// when the owner does not hold it yet (created reports that). It fails
// with protocol.ErrIDInUse while another owner holds the id.
func (t *Table[O]) Subscribe(owner O, info Info, at time.Time) (created bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[info.MachineID]
	if ok && e.owner != owner {
		return false, protocol.ErrIDInUse.New(info.MachineID)
	}
	if !ok {
		e = &entry[O]{owner: owner, info: info}
		t.m[info.MachineID] = e
	}
	if !e.info.Subscribed {
		e.info.Subscribed, e.info.SubscribedAt = true, at
	}
	return !ok, nil
}

// Unregister removes id if owner holds it, and returns how many group
// memberships went with it. Removing an id nobody holds is not an error;
// removing another owner's id is.
func (t *Table[O]) Unregister(owner O, id string) (groups int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok {
		return 0, nil
	}
	if e.owner != owner {
		return 0, protocol.ErrNotOwner.New(id)
	}
	t.remove(id, e)
	return len(e.groups), nil
}

// remove deletes an id and its group memberships; t.mu is held.
func (t *Table[O]) remove(id string, e *entry[O]) {
	for _, g := range e.groups {
		t.leave(g, id)
	}
	delete(t.m, id)
}

// Drop removes the given ids if owner still holds them: the cleanup when a
// connection closes.
func (t *Table[O]) Drop(owner O, ids []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if e, ok := t.m[id]; ok && e.owner == owner {
			t.remove(id, e)
		}
	}
}

// Holder returns the owner that holds id, subscribed or not.
func (t *Table[O]) Holder(id string) (owner O, ok bool) {
	t.mu.RLock()
	e, ok := t.m[id]
	if ok {
		owner = e.owner
	}
	t.mu.RUnlock()
	return owner, ok
}

// Route is a subscribed id and its owner. ID is the registry's own copy of
// the string, so keeping it costs no allocation.
type Route[O comparable] struct {
	Owner O
	ID    string
}

// Lookup returns the route of a subscribed id.
func (t *Table[O]) Lookup(id []byte) (r Route[O], ok bool) {
	t.mu.RLock()
	e, ok := t.m[string(id)]
	if ok && e.info.Subscribed {
		r = Route[O]{e.owner, e.info.MachineID}
	} else {
		ok = false
	}
	t.mu.RUnlock()
	return r, ok
}

// AppendSubscribed appends the route of every subscribed id but except to
// dst and returns it. Callers deliver outside the lock so that a slow
// target never holds up registrations.
func (t *Table[O]) AppendSubscribed(dst []Route[O], except []byte) []Route[O] {
	t.mu.RLock()
	for id, e := range t.m {
		if e.info.Subscribed && id != string(except) {
			dst = append(dst, Route[O]{e.owner, id})
		}
	}
	t.mu.RUnlock()
	return dst
}

// Len returns the number of registered ids.
func (t *Table[O]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// Snapshot returns every registered id's Info, sorted by id.
func (t *Table[O]) Snapshot() []Info {
	t.mu.RLock()
	out := make([]Info, 0, len(t.m))
	for _, e := range t.m {
		out = append(out, e.snapshot())
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].MachineID < out[j].MachineID })
	return out
}
