package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/statebus/statebus"
)

// busConn is one of the orchestrator's connections to the bus: a statebus
// client with no id of its own (statebus.Connect), whose identities are
// the machines hosted on it.
type busConn struct {
	c *statebus.Client
	// n is how many machines it holds or is registering (o.bmu); max is
	// how many it may: the orchestrator's limit, lowered to what the
	// service allowed once it refused one more.
	n, max int
}

// DefaultMachinesPerConnection is how many machines share a bus
// connection by default: the service's default MaxIdsPerConnection.
const DefaultMachinesPerConnection = 64

// WithMachinesPerConnection sets how many machines share one bus
// connection (default 64, the service's default MaxIdsPerConnection); set
// it to the service's MaxIdsPerConnection when that differs. A service
// that allows fewer is found out: a connection it refuses one more id on
// is full, and the machine goes on another. 1 gives each machine a
// connection of its own.
func WithMachinesPerConnection(n int) Option {
	return func(c *config) { c.perConn = max(n, 1) }
}

// attach registers h on the bus, on a connection with room, opening one
// when none has, with handlers that put what arrives in h's mailbox.
func (o *Orchestrator) attach(ctx context.Context, h *hosted) error {
	for {
		bc, err := o.pick(ctx)
		if err != nil {
			return fmt.Errorf("orchestrator: registering %s on the bus: %w", h.id, err)
		}
		opts := []statebus.IdentityOption{
			// In place before the id is registered: nothing sent the
			// moment it appears is missed.
			statebus.IdentityHandler("*", func(e statebus.Event) { o.fromBus(h, e) }),
			statebus.IdentityRequestHandler("*", func(ctx context.Context, e statebus.Event) (any, error) {
				return o.requestFromBus(ctx, h, e), nil
			}),
			statebus.IdentityErrorHandler(func(err error) { o.fail(fmt.Errorf("orchestrator: %s on the bus: %w", h.id, err)) }),
		}
		if o.cfg.durable {
			// Acknowledged by the mailbox loop once the machine processed it.
			opts = append(opts, statebus.IdentityManualAck())
		}
		x, err := bc.c.Register(ctx, h.id, opts...)
		if err == nil {
			h.ident, h.conn = x, bc
			return nil
		}
		full := errors.Is(err, statebus.ErrLimit) && strings.Contains(err.Error(), "MaxIdsPerConnection")
		o.release(bc, full)
		if !full {
			return fmt.Errorf("orchestrator: registering %s on the bus: %w", h.id, err)
		}
	}
}

// pick returns a connection with room for one more machine, counted on
// it, opening a new one when every one is full.
func (o *Orchestrator) pick(ctx context.Context) (*busConn, error) {
	o.bmu.Lock()
	defer o.bmu.Unlock()
	if o.connsClosed {
		return nil, ErrClosed
	}
	for _, bc := range o.conns {
		if bc.n < bc.max && bc.c.Status() != statebus.Closed {
			bc.n++
			return bc, nil
		}
	}
	opts := append(slices.Clip(o.cfg.busOpts),
		statebus.WithErrorHandler(func(err error) { o.fail(fmt.Errorf("orchestrator: on the bus: %w", err)) }))
	c, err := statebus.Connect(ctx, opts...)
	if err != nil {
		return nil, err
	}
	bc := &busConn{c: c, n: 1, max: o.cfg.perConn}
	o.conns = append(o.conns, bc)
	return bc, nil
}

// release gives back bc's place of a machine that left it (or never got
// on: full says the service refused it for MaxIdsPerConnection). A
// connection no machine uses any more is closed.
func (o *Orchestrator) release(bc *busConn, full bool) {
	o.bmu.Lock()
	bc.n--
	if full {
		bc.max = max(bc.n, 1)
	}
	empty := bc.n == 0 && !o.connsClosed
	if empty {
		o.conns = slices.DeleteFunc(o.conns, func(x *busConn) bool { return x == bc })
	}
	o.bmu.Unlock()
	if empty {
		bc.c.Close()
	}
}

// detach takes h off the bus: its id is unregistered (waiting for the
// service at most a second) and its place on its connection given back.
func (o *Orchestrator) detach(h *hosted) {
	if h.ident == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	h.ident.Unregister(ctx)
	cancel()
	o.release(h.conn, false)
}

// closeConns closes every bus connection, freeing the ids of every machine
// still on one, and lets no new one open.
func (o *Orchestrator) closeConns() {
	o.bmu.Lock()
	o.connsClosed = true
	conns := o.conns
	o.conns = nil
	o.bmu.Unlock()
	var wg sync.WaitGroup
	for _, bc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bc.c.Close()
		}()
	}
	wg.Wait()
}

// Connections returns how many bus connections the orchestrator has open.
func (o *Orchestrator) Connections() int {
	o.bmu.Lock()
	defer o.bmu.Unlock()
	return len(o.conns)
}
