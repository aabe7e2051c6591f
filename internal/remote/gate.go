package remote

import (
	"net"
	"net/netip"
	"sync"
)

// Gate bounds the TLS handshakes in flight: in all, and from one address
// (an IPv6 address counts with its whole /64, which one host usually
// has), so that peers that open TCP connections and never finish the
// handshake hold at most that many goroutines and buffers of the service,
// and one such address cannot take every slot. A connection the gate
// refuses is closed at once. The zero Gate admits nothing; use NewGate.
type Gate struct {
	max, perAddr int

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int // at most max entries: only addresses in flight
}

// NewGate returns a gate for max handshakes in all and perAddr from one
// address.
func NewGate(max, perAddr int) *Gate {
	return &Gate{max: max, perAddr: perAddr, byAddr: make(map[netip.Addr]int)}
}

// Full says which limit refused a connection.
type Full int

// The limits.
const (
	Admitted Full = iota
	FullTotal
	FullAddress
)

// Enter takes a slot for a handshake from a, unless a limit is reached.
// Every admitted Enter must be followed by one Leave with the same key.
func (g *Gate) Enter(a netip.Addr) Full {
	k := addrKey(a)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.max:
		return FullTotal
	case g.byAddr[k] >= g.perAddr:
		return FullAddress
	}
	g.total++
	g.byAddr[k]++
	return Admitted
}

// Leave gives back the slot of a finished (or failed) handshake.
func (g *Gate) Leave(a netip.Addr) {
	k := addrKey(a)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.byAddr[k]--; g.byAddr[k] <= 0 {
		delete(g.byAddr, k)
	}
}

// InFlight returns the handshakes in flight.
func (g *Gate) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

// addrKey is what the per-address limit counts by: an IPv4 address, or
// an IPv6 address's /64.
func addrKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// AddrOf returns the IP address of a TCP address (the zero Addr for
// anything else).
func AddrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
