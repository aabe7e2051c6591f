package router

import "github.com/statebus/statebus/protocol"

// SetState records state as id's State if owner holds id. It takes only
// the read lock: an owner that sets its state after every transition does
// not hold up registrations, and routing never waits for it. The text is
// bounded by the caller (protocol.MaxStateBytes); an id keeps one.
func (t *Table[O]) SetState(owner O, id []byte, state string) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.m[string(id)]
	if !ok || e.owner != owner {
		return protocol.ErrNotOwner.New(string(id))
	}
	if state == "" {
		e.state.Store(nil)
	} else {
		e.state.Store(&state)
	}
	return nil
}

// snapshot returns e's Info with its current State; t.mu is held.
func (e *entry[O]) snapshot() Info {
	info := e.info
	if s := e.state.Load(); s != nil {
		info.State = *s
	}
	return info
}
