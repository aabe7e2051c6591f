package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/outq"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

// This file is the server's side of federation (package federation owns
// the rest): what leaves this daemon when an id, group member or watcher
// lives on another, and what arrives from others. With federation off
// (s.fed nil) none of it runs: the local path only tests s.fed where a
// local lookup failed.

// remoteOrigin is where a remote sender waits for the outcome of an event
// or request delivered here.
type remoteOrigin struct {
	srv  *Server
	node string
	seq  uint64
}

func (s *Server) answer(o *remoteOrigin, kind federation.Kind, text string, payload []byte) {
	s.fed.Answer(o.node, &federation.Msg{Kind: kind, Seq: o.seq, Text: text, Payload: payload})
}

// fedState is the server's federation bookkeeping.
type fedState struct {
	mu   sync.Mutex
	wait map[*conn]*remoteFIFO // targets with remote deliveries waiting for room
}

// remoteFIFO holds, in arrival order, the remote deliveries to one target
// whose queue was full, so that later ones do not overtake them. One
// goroutine drains it, waiting for room as a local unicast does; the
// subscription that receives from other daemons never waits.
type remoteFIFO struct {
	items []*federation.Msg
	bytes int
}

// claim makes id this daemon's in the whole federation; subscribedAt is
// zero for a registration.
func (c *conn) claim(id, processName string, subscribedAt time.Time) error {
	err := c.srv.fed.Claim(context.Background(), id, federation.Holder{ProcessName: processName,
		ConnectedAt: c.connectedAt, SubscribedAt: subscribedAt})
	return c.claimErr(id, err)
}

func (c *conn) claimErr(id string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, federation.ErrInUse):
		return protocol.ErrIDInUse.New(id)
	default:
		return fedUnavailable(err)
	}
}

// fedUnavailable is the client's error for a federation failure:
// "Federation unavailable: cannot claim X: ...; retry when NATS is
// reachable", without the package's own "federation unavailable: ".
func fedUnavailable(err error) error {
	return protocol.ErrFederation.New(strings.TrimPrefix(err.Error(), federation.ErrUnavailable.Error()+": "))
}

// releaseIDs gives up ids in the federation.
func (s *Server) releaseIDs(ids []string) {
	for _, id := range ids {
		s.fed.Release(id)
	}
}

// leaseLost runs when this daemon lost its lease (cut off from the
// federation): other daemons may now take its ids, so every client
// connection is closed; clients that reconnect register again, which
// succeeds once the daemon is back in contact and the ids are free.
func (s *Server) leaseLost() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.abort()
	}
}

// toRemote sends a unicast event to target on daemon node; the sender
// gets its acknowledgement once that daemon wrote it to the target's
// socket, or the error.
func (c *conn) toRemote(node, target string, r *protocol.Request) error {
	return c.toRemoteMember(node, target, "", r)
}

// toRemoteMember is toRemote for a member of group (group "": a unicast):
// that daemon may give the event to another member of the group it
// holds, and its acknowledgement names the member that got it.
func (c *conn) toRemoteMember(node, target, group string, r *protocol.Request) error {
	s := c.srv
	m := federation.Msg{Kind: federation.KindEvent, Priority: uint8(r.Priority), Target: target, Text: group, Payload: c.eventJSON(r)}
	noAck := r.NoAck
	if noAck {
		m.Flags |= federation.FlagNoAck
	}
	if group != "" {
		m.Flags |= federation.FlagGroup
	}
	id := makeReqID(r.ID)
	var ds *deliverSpan
	if c.traced != nil {
		ds = c.traced.startRemote(target, node)
	}
	err := s.fed.Send(node, &m, func(a *federation.Msg, lost string) {
		ds.answered(a, lost)
		var idb [20]byte
		switch {
		case lost != "":
			s.countRefusal(protocol.ErrDeliveryFailed, 1)
			text := protocol.ErrDeliveryFailed.New(target + ": " + lost).Text
			c.sendLine(func(b []byte) []byte { return protocol.AppendError(b, text, id.bytes(idb[:])) })
		case a.Kind == federation.KindError:
			c.sendLine(func(b []byte) []byte { return protocol.AppendError(b, a.Text, id.bytes(idb[:])) })
		case !noAck:
			got := target
			if a.Target != "" {
				got = a.Target // a group's member on that daemon
			}
			c.sendLine(func(b []byte) []byte { return protocol.AppendAck(b, []byte(got), -1, id.bytes(idb[:])) })
		}
	}, s.fed.AckTimeout())
	if err = c.fedErr(err); err != nil {
		ds.refused(err)
	}
	return err
}

func (c *conn) fedErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, federation.ErrTooMany):
		return protocol.ErrLimit.New("cross-daemon events waiting for acknowledgement on this daemon; retry")
	default:
		return fedUnavailable(err)
	}
}

// ruleCopyRemote sends a routing rule's copy to "to", a machine or
// "@group" whose members are all on other daemons. It reports false when
// no daemon holds it. As a local copy, the sender is not told: a copy the
// other daemon could not deliver (or whose answer did not come) counts in
// RuleCopiesFailed.
func (c *conn) ruleCopyRemote(r *protocol.Request, to string) bool {
	s := c.srv
	var node, target, group string
	if g, _, ok := protocol.GroupTarget([]byte(to)); ok {
		remote, turn := s.fed.GroupMembers(string(g), nil)
		if len(remote) == 0 {
			return false
		}
		m := remote[(turn-1)%uint64(len(remote))]
		node, target, group = m.Node, m.ID, string(g)
	} else {
		var ok bool
		if node, ok = c.routeRemote([]byte(to)); !ok {
			return false
		}
		target = to
	}
	m := federation.Msg{Kind: federation.KindEvent, Flags: federation.FlagNoAck, Priority: uint8(r.Priority), Target: target, Text: group, Payload: c.eventJSON(r)}
	if group != "" {
		m.Flags |= federation.FlagGroup
	}
	failed := func(a *federation.Msg, lost string) {
		if lost != "" || a.Kind == federation.KindError {
			s.ctr.copiesFailed.Add(1)
		}
	}
	if err := s.fed.Send(node, &m, failed, s.fed.AckTimeout()); err != nil {
		s.ctr.copiesFailed.Add(1)
	}
	return true
}

// routeRemote routes an event whose target this daemon does not hold.
func (c *conn) routeRemote(target []byte) (node string, ok bool) {
	return c.srv.fed.Find(string(target))
}

// fromDaemon handles what another daemon sent: it runs on the one
// goroutine that receives from NATS, so it never waits.
func (s *Server) fromDaemon(m *federation.Msg) {
	switch m.Kind {
	case federation.KindEvent:
		s.remoteEvent(m)
	case federation.KindRequest:
		s.remoteRequest(m)
	case federation.KindBroadcast:
		s.remoteBroadcast(m)
	case federation.KindWatchCopy:
		s.remoteWatchCopy(m)
	}
}

// remoteEvent delivers a unicast event from another daemon to the target
// held here, after any earlier ones still waiting for room.
func (s *Server) remoteEvent(m *federation.Msg) {
	o := &remoteOrigin{s, m.From, m.Seq}
	route, ok := s.routes.Lookup([]byte(m.Target))
	if m.Flags&federation.FlagGroup != 0 && s.toLocalMember(m, o, route, ok) {
		return
	}
	if !ok {
		s.answer(o, federation.KindError, protocol.ErrTargetNotConnected.New(m.Target).Text, nil)
		return
	}
	s.fedMu.mu.Lock()
	f := s.fedMu.wait[route.Owner]
	if f == nil {
		err := s.enqueueRemote(route, m, o, false)
		if err != outq.ErrFull {
			s.fedMu.mu.Unlock()
			s.remoteOutcome(o, route.ID, err)
			return
		}
		f = &remoteFIFO{}
		if s.fedMu.wait == nil {
			s.fedMu.wait = map[*conn]*remoteFIFO{}
		}
		s.fedMu.wait[route.Owner] = f
		s.handlers.Add(1)
		go s.drainRemote(route.Owner, f)
	}
	if len(f.items) >= s.cfg.MaxQueueEvents || f.bytes+len(m.Payload) > s.cfg.MaxQueueBytes {
		s.fedMu.mu.Unlock()
		s.remoteOutcome(o, route.ID, outq.ErrFull)
		return
	}
	m.Payload = append([]byte(nil), m.Payload...)
	f.items = append(f.items, m)
	f.bytes += len(m.Payload)
	s.fedMu.mu.Unlock()
}

// toLocalMember queues a group event from another daemon on its member
// target (route, if ok) or, when that one cannot take it at once (full,
// remote events waiting for it, or gone), on another member of the group
// held here that can, as a local "@group" event passes over full members.
// It reports false when none can: the event then waits for its target as
// a unicast would (or gets its error).
func (s *Server) toLocalMember(m *federation.Msg, o *remoteOrigin, route router.Route[*conn], ok bool) bool {
	s.fedMu.mu.Lock()
	defer s.fedMu.mu.Unlock()
	try := func(rt router.Route[*conn]) bool {
		return s.fedMu.wait[rt.Owner] == nil && s.enqueueRemote(rt, m, o, false) == nil
	}
	if ok && try(route) {
		return true
	}
	members, first := s.routes.Members([]byte(m.Text))
	for i := range members {
		if rt := members[(first+i)%len(members)]; rt.ID != m.Target && try(rt) {
			return true
		}
	}
	return false
}

// drainRemote delivers the waiting remote events of one target in order,
// each waiting up to SlowConsumerTimeout for room.
func (s *Server) drainRemote(target *conn, f *remoteFIFO) {
	defer s.handlers.Done()
	for {
		s.fedMu.mu.Lock()
		if len(f.items) == 0 {
			delete(s.fedMu.wait, target)
			s.fedMu.mu.Unlock()
			return
		}
		m := f.items[0]
		f.items[0] = nil
		f.items = f.items[1:]
		f.bytes -= len(m.Payload)
		s.fedMu.mu.Unlock()
		o := &remoteOrigin{s, m.From, m.Seq}
		route, ok := s.routes.Lookup([]byte(m.Target))
		if !ok || route.Owner != target {
			s.answer(o, federation.KindError, protocol.ErrTargetNotConnected.New(m.Target).Text, nil)
			continue
		}
		s.remoteOutcome(o, route.ID, s.enqueueRemote(route, m, o, true))
	}
}

// remoteOutcome answers a remote event that could not be queued.
func (s *Server) remoteOutcome(o *remoteOrigin, tid string, err error) {
	switch err {
	case nil:
	case outq.ErrFull:
		s.answer(o, federation.KindError, protocol.ErrSlowConsumer.New(tid).Text, nil)
	case outq.ErrCanceled:
		s.answer(o, federation.KindError, protocol.ErrShuttingDown.New("").Text, nil)
	default:
		s.answer(o, federation.KindError, protocol.ErrTargetNotConnected.New(tid).Text, nil)
	}
}

// enqueueRemote queues a remote event line on route's connection; the
// delivery record carries its origin, so that the writer acknowledges it
// to the sending daemon once written.
func (s *Server) enqueueRemote(route router.Route[*conn], m *federation.Msg, o *remoteOrigin, wait bool) error {
	q := route.Owner.q
	multi := route.Owner.multi.Load()
	n := len(m.Payload) + protocol.DeliveryOverhead + 64 + RecordBytes + forBytes(multi, route.ID)
	pri := outq.Priority(m.Priority)
	var b []byte
	var err error
	if wait {
		b, err = q.BeginPri(pri, n, s.cfg.SlowConsumerTimeout, s.done)
	} else {
		b, err = q.TryBegin(pri, n)
	}
	if err != nil {
		return err
	}
	q.CommitRec(addressed(protocol.AppendDelivery(b, m.Payload), multi, route.ID),
		delivery{target: route.ID, remote: o, noAck: m.Flags&federation.FlagNoAck != 0})
	return nil
}

// remoteWritten acknowledges remote events once written. An event whose
// sender asked for no acknowledgement is acknowledged to its daemon too:
// that daemon waits for an outcome either way (errors still reach the
// sender), and only drops the ack line.
func (s *Server) remoteWritten(d *delivery) {
	if d.remote != nil {
		s.fed.Answer(d.remote.node, &federation.Msg{Kind: federation.KindAck, Seq: d.remote.seq, Target: d.target})
	}
}

// remoteFailed tells the sending daemon an event was not written.
func (s *Server) remoteFailed(d *delivery, why string) {
	if d.remote != nil {
		s.answer(d.remote, federation.KindError, protocol.ErrDeliveryFailed.New(d.target+why).Text, nil)
	}
}

// broadcastRemote sends a broadcast (or "@group:*") to every other daemon
// and acknowledges the sender with the total of recipients once each has
// answered (or was given up on after AckTimeout).
func (c *conn) broadcastRemote(r *protocol.Request, target []byte, local int) {
	s := c.srv
	nodes := s.fed.Daemons(nil)
	id := makeReqID(r.ID)
	target = []byte(string(target)) // the ack may be sent after the read buffer moved on
	ack := func(n int) {
		if !r.NoAck {
			var idb [20]byte
			c.sendLine(func(b []byte) []byte { return protocol.AppendAck(b, target, n, id.bytes(idb[:])) })
		}
	}
	noAck := r.NoAck
	if len(nodes) == 0 {
		ack(local)
		return
	}
	var mu sync.Mutex
	left, total := len(nodes), local
	tgt := string(target)
	for _, node := range nodes {
		m := federation.Msg{Kind: federation.KindBroadcast, Priority: uint8(r.Priority), Source: string(r.Event.Source), Target: tgt, Payload: c.eventJSON(r)}
		done := func(a *federation.Msg, lost string) {
			mu.Lock()
			if a != nil && a.Kind == federation.KindCount {
				total += int(a.N)
			}
			left--
			last := left == 0
			mu.Unlock()
			if last && !noAck {
				ack(total)
			}
		}
		if err := s.fed.Send(node, &m, done, s.fed.AckTimeout()); err != nil {
			done(nil, err.Error())
		}
	}
}

// remoteBroadcast delivers another daemon's broadcast to the subscribed
// machines here (or a group's members) but its source, without waiting,
// and answers with how many it reached.
func (s *Server) remoteBroadcast(m *federation.Msg) {
	var targets []router.Route[*conn]
	if g, _, ok := protocol.GroupTarget([]byte(m.Target)); ok {
		members, _ := s.routes.Members(g)
		targets = members
	} else {
		targets = s.routes.AppendSubscribed(nil, []byte(m.Source))
	}
	n := 0
	size := len(m.Payload) + protocol.DeliveryOverhead + 64 + RecordBytes
	for _, t := range targets {
		if t.ID == m.Source {
			continue
		}
		multi := t.Owner.multi.Load()
		b, err := t.Owner.q.TryBegin(outq.Priority(m.Priority), size+forBytes(multi, t.ID))
		if err != nil {
			s.countRefusal(protocol.ErrSlowConsumer, 1)
			continue
		}
		t.Owner.q.CommitRec(addressed(protocol.AppendDelivery(b, m.Payload), multi, t.ID), delivery{target: t.ID, broadcast: true})
		n++
	}
	s.fed.Answer(m.From, &federation.Msg{Kind: federation.KindCount, Seq: m.Seq, N: int64(n)})
}

// toGroupFederated routes an event (or request) to "@group" when some
// members are on other daemons: the members of every daemon in one order
// (by id) with one round-robin counter (the federation's, per group), so
// that each member gets its share whichever daemon holds it. A local
// member that cannot take the event at once is passed over as in
// toGroup; a remote member is sent the event, and its daemon passes over
// it in the same way to another member there that can (FlagGroup), so an
// event waits only when every member on that daemon is full. A request
// goes to the remote member whose turn it is.
func (c *conn) toGroupFederated(r *protocol.Request, group []byte, local []router.Route[*conn], remote []federation.RemoteMember, turn uint64) error {
	type slot struct {
		id    string
		local int // index in local, or -1: remote[remote]
		rem   int
	}
	all := make([]slot, 0, len(local)+len(remote))
	for i, m := range local {
		all = append(all, slot{m.ID, i, -1})
	}
	for i, m := range remote {
		all = append(all, slot{m.ID, -1, i})
	}
	slices.SortFunc(all, func(a, b slot) int { return strings.Compare(a.id, b.id) })
	k := int((turn - 1) % uint64(len(all)))
	for i := range all {
		sl := all[(k+i)%len(all)]
		if sl.local < 0 {
			m := remote[sl.rem]
			if r.IsRequest {
				return c.requestRemote(m.Node, m.ID, r)
			}
			return c.toRemoteMember(m.Node, m.ID, string(group), r)
		}
		err := c.toMember(local[sl.local], r, false)
		if err == nil || !errors.Is(err, protocol.ErrSlowConsumer) && !errors.Is(err, protocol.ErrTargetNotConnected) {
			return err
		}
	}
	return protocol.ErrTargetNotConnected.New(string(r.Event.Target)) // not reached: remote is not empty
}

// requestRemote sends a request to target on daemon node and answers the
// caller with the reply, the responder's error or the failure.
func (c *conn) requestRemote(node, target string, r *protocol.Request) error {
	s := c.srv
	if max := s.cfg.MaxPendingRequests; c.requestsOut() >= max {
		return limitErr(max, "requests waiting for replies on this connection (MaxPendingRequests); wait for some to finish")
	}
	timeout := s.cfg.RequestTimeout
	if r.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(r.TimeoutMs)*time.Millisecond)
	}
	m := federation.Msg{Kind: federation.KindRequest, Priority: uint8(r.Priority), Target: target, Payload: c.eventJSON(r), N: int64(r.TimeoutMs)}
	id := makeReqID(r.ID)
	c.remoteOut.Add(1)
	err := s.fed.Send(node, &m, func(a *federation.Msg, lost string) {
		c.remoteOut.Add(-1)
		var idb [20]byte
		switch {
		case lost != "":
			text := protocol.ErrNoResponder.New(target + " did not reply: " + lost).Text
			c.sendLine(func(b []byte) []byte { return protocol.AppendError(b, text, id.bytes(idb[:])) })
		case a.Kind == federation.KindError:
			c.sendLine(func(b []byte) []byte { return protocol.AppendError(b, a.Text, id.bytes(idb[:])) })
		default:
			c.sendLine(func(b []byte) []byte { return protocol.AppendOK(b, a.Payload, id.bytes(idb[:])) })
		}
	}, timeout+s.fed.AckTimeout())
	if err != nil {
		c.remoteOut.Add(-1)
	}
	return c.fedErr(err)
}

// remoteRequest delivers another daemon's request to its target here and
// records it as pending, answered to that daemon.
func (s *Server) remoteRequest(m *federation.Msg) {
	o := &remoteOrigin{s, m.From, m.Seq}
	route, ok := s.routes.Lookup([]byte(m.Target))
	if !ok {
		s.answer(o, federation.KindError, protocol.ErrNoResponder.New(m.Target+" is not connected").Text, nil)
		return
	}
	target := route.Owner
	timeout := s.cfg.RequestTimeout
	var sent time.Time
	now := time.Now()
	if m.N > 0 {
		timeout = min(timeout, time.Duration(m.N)*time.Millisecond)
		sent = now.Add(timeout)
	}
	token := s.nextToken.Add(1)
	p := &pendingRequest{remote: o, target: route.ID, deadline: now.Add(timeout), timeout: timeout}
	if !target.addPending(token, p) {
		s.answer(o, federation.KindError, protocol.ErrNoResponder.New(route.ID+" disconnected").Text, nil)
		return
	}
	multi := target.multi.Load()
	size := len(m.Payload) + protocol.DeliveryOverhead + 64 + RecordBytes + forBytes(multi, route.ID)
	b, err := target.q.TryBegin(outq.Priority(m.Priority), size)
	if err != nil {
		if target.takePending(token) != nil {
			s.remoteOutcome(o, route.ID, err)
		}
		return
	}
	target.q.CommitRec(addressed(protocol.AppendRequestDelivery(b, m.Payload, token, sent), multi, route.ID),
		delivery{target: route.ID, noAck: true, request: true})
}

// remoteWatchCopy gives a watcher here its copy of an event routed on
// another daemon.
func (s *Server) remoteWatchCopy(m *federation.Msg) {
	w := s.watches.Get(uint64(m.N))
	if w == nil {
		return
	}
	b, err := w.Owner.q.TryBegin(outq.Priority(m.Priority), len(m.Payload)+protocol.DeliveryOverhead+32)
	if err != nil {
		s.ctr.watchDropped.Add(1)
		return
	}
	w.Owner.q.Commit(protocol.AppendWatchCopy(b, m.Payload, w.ID))
	s.ctr.watchCopies.Add(1)
}

// watchRemote sends copies of a routed event to the matching watches on
// other daemons.
func (c *conn) watchRemote(r *protocol.Request) {
	ev := &r.Event
	c.srv.fed.MatchWatches(string(ev.Name), string(ev.Source), string(ev.Target), func(node string, watchID uint64) {
		m := federation.Msg{Kind: federation.KindWatchCopy, Priority: uint8(r.Priority), N: int64(watchID), Payload: c.eventJSON(r)}
		c.srv.fed.Send(node, &m, nil, 0)
	})
}

// withRemotes marks the local ids with this daemon and adds those held
// on other daemons, sorted by id.
func (s *Server) withRemotes(out []protocol.MachineInfo) []protocol.MachineInfo {
	node, host := s.fed.Name(), s.fed.Host()
	for i := range out {
		out[i].Daemon, out[i].Host = node, host
	}
	for _, r := range s.fed.Remotes() {
		m := protocol.MachineInfo{MachineID: r.ID, ProcessName: r.ProcessName, PeerPID: -1, PeerUID: -1, PeerGID: -1,
			RegisteredAt: r.RegisteredAt, ConnectedAt: r.ConnectedAt, Daemon: r.Node, Host: r.Host}
		if !r.SubscribedAt.IsZero() {
			at := r.SubscribedAt
			m.Subscribed, m.SubscribedAt = true, &at
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b protocol.MachineInfo) int { return strings.Compare(a.MachineID, b.MachineID) })
	return out
}
