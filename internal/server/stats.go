package server

import (
	"errors"
	"sync/atomic"

	"github.com/statebus/statebus/protocol"
)

// Reasons an event or request is refused, as counted in Stats.
var refusalReasons = []struct {
	kind   *protocol.Kind
	reason string
}{
	{protocol.ErrTargetNotConnected, "target_not_connected"},
	{protocol.ErrSlowConsumer, "slow_consumer"},
	{protocol.ErrDeliveryFailed, "delivery_failed"},
	{protocol.ErrNotOwner, "not_owner"},
	{protocol.ErrAccessDenied, "access_denied"},
	{protocol.ErrIDInUse, "id_in_use"},
	{protocol.ErrTooLarge, "too_large"},
	{protocol.ErrShuttingDown, "shutting_down"},
	{protocol.ErrDropped, "dropped_by_rule"},
	{protocol.ErrLimit, "limit"},
	{protocol.ErrAmbiguousField, "ambiguous_field"},
}

// otherReason counts malformed requests: bad JSON, missing fields, ...
const otherReason = "invalid"

// Stats are the service's counters since it started.
type Stats struct {
	// EventsReceived counts SendEvent requests read.
	EventsReceived uint64
	// EventsDelivered counts event lines written to a target's socket
	// (each broadcast recipient counts once).
	EventsDelivered uint64
	// Refused counts error responses by reason (see RefusalReasons).
	Refused map[string]uint64
	// BytesIn and BytesOut count bytes read from and written to clients.
	BytesIn, BytesOut uint64
	// QueuedBytes is what sits in outbound queues right now.
	QueuedBytes int
	// PendingRequests counts requests waiting for replies right now.
	PendingRequests int
	// ParkedConnections counts the connections idle enough that their
	// reader parked (no goroutine; internal/park) right now.
	ParkedConnections int
	// WatchCopies counts copies sent to watchers; WatchDropped those a
	// watcher's full queue could not take.
	WatchCopies, WatchDropped uint64
	// RuleCopiesFailed counts routing rule copies that could not be queued
	// (their target was not connected or not keeping up).
	RuleCopiesFailed uint64
	// SlowConsumersClosed counts connections closed because what the
	// service held for them reached MaxConnectionBytes.
	SlowConsumersClosed uint64
	// ConnectionsRefusedPerUID counts connections refused at
	// MaxConnectionsPerUID.
	ConnectionsRefusedPerUID uint64
	// TLSHandshakesRefused counts TLS connections closed unserved because
	// TlsMaxHandshakes or TlsMaxHandshakesPerAddress handshakes were in
	// flight; TLSHandshakesFailed those whose handshake failed or timed
	// out, or whose client certificate was refused.
	TLSHandshakesRefused, TLSHandshakesFailed uint64
	// TLSHandshakesInFlight is how many TLS handshakes are under way.
	TLSHandshakesInFlight int

	// Federation (MessageBus:Cluster; all 0 when off): messages and
	// bytes to and from other daemons; messages answered, by outcome
	// (FederationFailed: the other daemon answered with an error, such as
	// a slow consumer there); answers that never came in time; messages
	// waiting for answers now; reads of the ownership bucket for ids the
	// directory did not know, and those refused by their bounds
	// (docs/federation.md, "Budgets").
	FederationSent, FederationReceived           uint64
	FederationSentBytes, FederationReceivedBytes uint64
	FederationAcked, FederationFailed            uint64
	FederationTimedOut                           uint64
	FederationInFlight                           int
	FederationLookups, FederationLookupsSkipped  uint64
}

// RefusalReasons lists the reasons Stats.Refused uses.
func RefusalReasons() []string {
	out := make([]string, 0, len(refusalReasons)+1)
	for _, r := range refusalReasons {
		out = append(out, r.reason)
	}
	return append(out, otherReason)
}

// counters are one connection's, each written by one goroutine, so the
// atomic adds do not contend.
type counters struct {
	received  atomic.Uint64 // reader
	bytesIn   atomic.Uint64 // reader
	delivered atomic.Uint64 // writer
}

type serverCounters struct {
	watchCopies  atomic.Uint64
	watchDropped atomic.Uint64
	closed       counters // of connections that are gone
	closedW      atomic.Uint64
	refused      [12]atomic.Uint64 // refusalReasons, then otherReason
	copiesFailed atomic.Uint64     // routing rule copies that could not be queued
	slowClosed   atomic.Uint64     // connections closed at MaxConnectionBytes
	uidRefused   atomic.Uint64     // connections refused at MaxConnectionsPerUID

	handshakesRefused atomic.Uint64 // TLS connections closed at the handshake gate
	handshakesFailed  atomic.Uint64 // TLS handshakes failed, timed out or refused
}

func (s *Server) countRefusal(err error, n uint64) {
	var k *protocol.Kind
	i := len(refusalReasons)
	if errors.As(err, &k) {
		for j, r := range refusalReasons {
			if r.kind == k {
				i = j
				break
			}
		}
	}
	s.ctr.refused[i].Add(n)
}

// retire folds a closing connection's counters into the server's.
func (s *Server) retire(c *conn) {
	s.ctr.closed.received.Add(c.ctr.received.Load())
	s.ctr.closed.bytesIn.Add(c.ctr.bytesIn.Load())
	s.ctr.closed.delivered.Add(c.ctr.delivered.Load())
	s.ctr.closedW.Add(c.q.BytesWritten())
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		EventsReceived:  s.ctr.closed.received.Load(),
		EventsDelivered: s.ctr.closed.delivered.Load(),
		BytesIn:         s.ctr.closed.bytesIn.Load(),
		BytesOut:        s.ctr.closedW.Load(),
		Refused:         make(map[string]uint64),
	}
	s.mu.Lock()
	for c := range s.conns {
		st.EventsReceived += c.ctr.received.Load()
		st.EventsDelivered += c.ctr.delivered.Load()
		st.BytesIn += c.ctr.bytesIn.Load()
		st.BytesOut += c.q.BytesWritten()
		st.QueuedBytes += c.q.Len()
		st.PendingRequests += c.requestsOut()
	}
	s.mu.Unlock()
	st.ParkedConnections = s.parker.Len()
	st.WatchCopies, st.WatchDropped = s.ctr.watchCopies.Load(), s.ctr.watchDropped.Load()
	st.RuleCopiesFailed = s.ctr.copiesFailed.Load()
	st.SlowConsumersClosed = s.ctr.slowClosed.Load()
	st.ConnectionsRefusedPerUID = s.ctr.uidRefused.Load()
	st.TLSHandshakesRefused = s.ctr.handshakesRefused.Load()
	st.TLSHandshakesFailed = s.ctr.handshakesFailed.Load()
	if s.gate != nil {
		st.TLSHandshakesInFlight = s.gate.InFlight()
	}
	for i, r := range RefusalReasons() {
		st.Refused[r] = s.ctr.refused[i].Load()
	}
	if s.fed != nil {
		m := &s.fed.Metrics
		st.FederationSent, st.FederationReceived = m.Sent.Load(), m.Received.Load()
		st.FederationSentBytes, st.FederationReceivedBytes = m.SentBytes.Load(), m.RecvBytes.Load()
		st.FederationAcked, st.FederationFailed, st.FederationTimedOut = m.Acked.Load(), m.Failed.Load(), m.TimedOut.Load()
		st.FederationInFlight = s.fed.InFlight()
		st.FederationLookups, st.FederationLookupsSkipped = m.Lookups.Load(), m.LookupsSkipped.Load()
	}
	return st
}

func init() {
	if len(refusalReasons)+1 != len(serverCounters{}.refused) {
		panic("server: serverCounters.refused must have one slot per refusal reason, plus one")
	}
}
