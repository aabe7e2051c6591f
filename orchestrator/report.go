package orchestrator

import (
	"context"
	"fmt"
	"strings"

	"github.com/statebus/statebus"
)

// noteState marks h's state as changed and wakes the reporter, if the
// machines are on the bus. It costs an atomic store and, when the reporter
// is not already due, a channel send: nothing that grows with the events.
func (o *Orchestrator) noteState(h *hosted) {
	if !o.cfg.bus || h.dirty.Swap(true) {
		return
	}
	select {
	case o.report <- struct{}{}:
	default:
	}
}

// reportLoop records each machine's changed state in the service's
// registry, one machine at a time, each waiting for the previous one's
// acknowledgement: under load, the states of many transitions fold into
// one report. It ends when Close cancels o.ctx.
func (o *Orchestrator) reportLoop() {
	defer o.wg.Done()
	for {
		select {
		case <-o.report:
		case <-o.ctx.Done():
			return
		}
		o.mu.RLock()
		hs := make([]*hosted, 0, len(o.machines))
		for _, h := range o.machines {
			if h.dirty.Load() {
				hs = append(hs, h)
			}
		}
		o.mu.RUnlock()
		for _, h := range hs {
			if !h.dirty.Swap(false) || h.ident == nil {
				continue
			}
			st := registryState(h.m.State())
			if st == h.reported {
				continue
			}
			ctx, cancel := context.WithTimeout(h.ctx, o.cfg.sendTimeout)
			err := h.ident.SetState(ctx, st)
			cancel()
			switch {
			case err == nil:
				h.reported = st
			case h.ctx.Err() == nil:
				h.reported = ""
				o.fail(fmt.Errorf("orchestrator: recording %s's state %q on the bus: %w", h.id, st, err))
			}
		}
	}
}

// registryState returns state cut to what the registry keeps: whole
// regions while they fit, then "…".
func registryState(state string) string {
	if len(state) <= statebus.MaxStateBytes {
		return state
	}
	const more = "…"
	cut := state[:statebus.MaxStateBytes-len(more)]
	if i := strings.LastIndexByte(cut, ';'); i > 0 {
		cut = cut[:i+1]
	} else {
		for len(cut) > 0 && cut[len(cut)-1]&0xc0 == 0x80 {
			cut = cut[:len(cut)-1] // not inside a character
		}
		if len(cut) > 0 && cut[len(cut)-1] >= 0xc0 {
			cut = cut[:len(cut)-1]
		}
	}
	return cut + more
}
