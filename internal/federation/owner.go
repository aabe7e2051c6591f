package federation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/statebus/statebus/internal/router"
)

// Ownership. Each daemon holds a lease: the key d.NODE in the live bucket,
// whose values expire Lease after they were written (the bucket's TTL) and
// which the daemon rewrites every Lease/4 with the epoch of this run. An
// id is held by the record id.ID in the ids bucket, written create-only
// with the holder's node and epoch. A record is valid while its holder's
// lease carries the same epoch; a record whose holder's lease is gone (or
// from an earlier run) can be taken over by a compare-and-swap on its
// revision. So at most one daemon holds an id, and one that dies loses
// its ids after at most Lease.
//
// A daemon that cannot renew its lease (cut off from the JetStream
// majority) gives up its ids when its own view of the lease ends, which
// is never later than the bucket's: it counts from before the write that
// the bucket counts from.

// ErrInUse: another daemon's live connection holds the id.
var ErrInUse = errors.New("federation: id held on another daemon")

// ErrUnavailable wraps failures to reach the ownership buckets.
var ErrUnavailable = errors.New("federation unavailable")

// record is the value of an id, group or watch key.
type record struct {
	Node        string `json:"n"`
	Epoch       string `json:"e"`
	Host        string `json:"h,omitempty"`
	At          int64  `json:"t,omitempty"` // unix ms
	ProcessName string `json:"p,omitempty"`
	Connected   int64  `json:"c,omitempty"` // unix ms: when the holder's connection was made
	Subscribed  int64  `json:"s,omitempty"` // unix ms: when it subscribed (0: it did not)
	// Watch filters.
	EventName string `json:"we,omitempty"`
	Source    string `json:"ws,omitempty"`
	Target    string `json:"wt,omitempty"`
}

type liveRec struct {
	Epoch string    `json:"e"`
	Host  string    `json:"h"`
	seen  time.Time // when this daemon last saw it renewed
}

var b64 = base64.RawURLEncoding

func idKey(id string) string { return "id." + b64.EncodeToString([]byte(id)) }
func groupKey(group, id string) string {
	return "grp." + b64.EncodeToString([]byte(group)) + "." + b64.EncodeToString([]byte(id))
}
func (n *Node) liveKey(node string) string {
	return "d." + node
}

func (n *Node) bucket(kind string) string { return "SB_" + n.cfg.Name + "_" + kind }

// setup creates (or opens) the buckets, takes the lease, subscribes to
// this daemon's subject and starts following the directory.
func (n *Node) setup(ctx context.Context) error {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return err
	}
	n.js = js
	for {
		err = n.openBuckets(ctx)
		if err == nil {
			break
		}
		n.log.Info("federation: waiting for JetStream", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("federation: the JetStream buckets are not available: %w (a cluster of %d replicas needs that many JetStream nodes up; check ClusterRoutes or ClusterUrls)", err, n.cfg.Replicas)
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := n.renew(ctx); err != nil {
		return fmt.Errorf("federation: cannot take this daemon's lease: %w", err)
	}
	if err := n.subscribe(); err != nil {
		return err
	}
	if err := n.follow(ctx); err != nil {
		return err
	}
	n.wg.Add(2)
	go n.renewLoop()
	go n.janitor()
	return nil
}

func (n *Node) openBuckets(ctx context.Context) error {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	live, err := n.js.CreateOrUpdateKeyValue(c, jetstream.KeyValueConfig{
		Bucket: n.bucket("live"), TTL: n.cfg.Lease, LimitMarkerTTL: max(n.cfg.Lease, time.Second),
		Replicas: n.cfg.Replicas, History: 1, Description: "statebus daemon leases",
	})
	if err != nil {
		return err
	}
	ids, err := n.js.CreateOrUpdateKeyValue(c, jetstream.KeyValueConfig{
		Bucket: n.bucket("ids"), Replicas: n.cfg.Replicas, History: 1,
		Description: "statebus machine ids, group members and watches",
	})
	if err != nil {
		return err
	}
	n.live, n.ids = live, ids
	return nil
}

// renew writes this daemon's lease.
func (n *Node) renew(ctx context.Context) error {
	start := time.Now()
	v, _ := json.Marshal(liveRec{Epoch: n.currentEpoch(), Host: n.cfg.Host})
	c, cancel := context.WithTimeout(ctx, max(n.cfg.Lease/4, time.Second))
	defer cancel()
	if _, err := n.live.Put(c, n.liveKey(n.cfg.Node), v); err != nil {
		return err
	}
	n.leaseUntil.Store(start.Add(n.cfg.Lease).UnixNano())
	return nil
}

func (n *Node) currentEpoch() string {
	n.dir.mu.RLock()
	defer n.dir.mu.RUnlock()
	return n.epoch
}

// leased reports whether this daemon's lease is in force.
func (n *Node) leased() bool { return time.Now().UnixNano() < n.leaseUntil.Load() }

// renewLoop renews the lease every Lease/4. When it lapses, the ids this
// daemon held are given up (lost) and the next run of the lease has a new
// epoch, so that records written under the old one are stale everywhere.
func (n *Node) renewLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Lease / 4)
	defer t.Stop()
	lapsed := false
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if !lapsed && !n.leased() {
			lapsed = true
			n.log.Error("federation: lease lapsed; dropping every machine id held here", "node", n.cfg.Node, "lease", n.cfg.Lease)
			n.dir.mu.Lock()
			n.epoch = newEpoch()
			n.dir.mu.Unlock()
			n.flight.failAll("", "this daemon lost contact with the federation")
			if f := n.lost.Load(); f != nil {
				(*f)()
			}
		}
		if err := n.renew(context.Background()); err != nil {
			n.log.Warn("federation: cannot renew lease", "err", err, "until", time.Unix(0, n.leaseUntil.Load()))
			continue
		}
		if lapsed {
			lapsed = false
			n.log.Info("federation: lease renewed; ids can be registered again")
		}
	}
}

func (n *Node) errUnavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v; retry when NATS is reachable", ErrUnavailable, what, err)
}

// Holder describes the connection that claims an id, for the listings of
// other daemons (/machines).
type Holder struct {
	ProcessName  string
	ConnectedAt  time.Time
	SubscribedAt time.Time // zero: registered, not subscribed
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// Claim makes id this daemon's in the whole federation. It fails with
// ErrInUse while a live daemon holds it, and with ErrUnavailable when the
// ownership bucket cannot be reached (for example from the minority side
// of a partition).
func (n *Node) Claim(ctx context.Context, id string, h Holder) error {
	if !n.leased() {
		return n.errUnavailable("cannot claim "+id, errors.New("this daemon's lease has lapsed"))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec := record{Node: n.cfg.Node, Epoch: n.currentEpoch(), Host: n.cfg.Host, At: time.Now().UnixMilli(), ProcessName: h.ProcessName,
		Connected: unixMs(h.ConnectedAt), Subscribed: unixMs(h.SubscribedAt)}
	v, _ := json.Marshal(rec)
	key := idKey(id)
	for try := 0; try < 3; try++ {
		rev, err := n.ids.Create(ctx, key, v)
		if err == nil {
			n.dir.claimed(id, rec, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return n.errUnavailable("cannot claim "+id, err)
		}
		e, err := n.ids.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return n.errUnavailable("cannot claim "+id, err)
		}
		var old record
		json.Unmarshal(e.Value(), &old)
		if old.Node != n.cfg.Node || old.Epoch != rec.Epoch {
			alive, err := n.alive(ctx, old.Node, old.Epoch)
			if err != nil {
				return n.errUnavailable("cannot claim "+id, err)
			}
			if alive {
				return ErrInUse
			}
		}
		rev, err = n.ids.Update(ctx, key, v, e.Revision())
		if err == nil {
			n.dir.claimed(id, rec, rev)
			return nil
		}
	}
	return ErrInUse
}

// MarkSubscribed records that id, held here, subscribed at, so that other
// daemons list it as subscribed. It runs on the holder's reader (as Claim
// and Release do), so the record's revision cannot change under it.
func (n *Node) MarkSubscribed(ctx context.Context, id string, at time.Time) error {
	d := &n.dir
	d.mu.RLock()
	rev, mine := d.mine[id]
	rec := d.ids[id]
	d.mu.RUnlock()
	if !mine || rec.Subscribed != 0 {
		return nil
	}
	rec.Subscribed = unixMs(at)
	v, _ := json.Marshal(rec)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, err := n.ids.Update(ctx, idKey(id), v, rev)
	if err != nil {
		return n.errUnavailable("cannot record that "+id+" subscribed", err)
	}
	d.mu.Lock()
	if _, ok := d.mine[id]; ok {
		d.mine[id] = rev
		d.ids[id] = rec
	}
	d.mu.Unlock()
	return nil
}

// alive asks the live bucket whether node's lease with epoch is in force.
func (n *Node) alive(ctx context.Context, node, epoch string) (bool, error) {
	e, err := n.live.Get(ctx, n.liveKey(node))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var l liveRec
	json.Unmarshal(e.Value(), &l)
	return l.Epoch == epoch, nil
}

// Release gives up id (and its group memberships) in the background.
func (n *Node) Release(id string) {
	rev, groups := n.dir.released(id)
	if rev == 0 {
		return
	}
	n.background(func(ctx context.Context) {
		for _, g := range groups {
			n.ids.Delete(ctx, groupKey(g, id))
		}
		n.ids.Delete(ctx, idKey(id), jetstream.LastRevision(rev))
	})
}

// Join records id, held here, as a member of group.
func (n *Node) Join(ctx context.Context, group, id string) error {
	if !n.dir.joined(group, id) {
		return nil
	}
	v, _ := json.Marshal(record{Node: n.cfg.Node, Epoch: n.currentEpoch()})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := n.ids.Put(ctx, groupKey(group, id), v); err != nil {
		n.dir.left(group, id)
		return n.errUnavailable("cannot join "+group, err)
	}
	return nil
}

// Leave removes id from group.
func (n *Node) Leave(group, id string) {
	if n.dir.left(group, id) {
		n.background(func(ctx context.Context) { n.ids.Delete(ctx, groupKey(group, id)) })
	}
}

// background runs a bucket change off the caller's path, bounded in time.
func (n *Node) background(f func(context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f(ctx)
	}()
}

// Remote is an id held on another daemon, as the directory knows it.
type Remote struct {
	ID, Node, Host, ProcessName string
	RegisteredAt                time.Time
	// ConnectedAt is when the holder's connection was made; zero when
	// the holding daemon did not say (an older statebusd).
	ConnectedAt time.Time
	// SubscribedAt is when it subscribed; zero: it did not.
	SubscribedAt time.Time
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// directory is this daemon's view of the buckets.
type directory struct {
	mu      sync.RWMutex
	ids     map[string]record            // every id's record (all daemons)
	live    map[string]liveRec           // every daemon's lease
	groups  map[string]map[string]string // group -> member id -> node
	watches map[string]record            // watch key -> filter (other daemons')
	mine    map[string]uint64            // ids held here -> record revision
	mineGrp map[string][]string          // ids held here -> groups
	rr      map[string]*uint64           // group -> round-robin counter
	// lastLive is when the last renewal of any daemon was seen.
	lastLive time.Time
}

func (d *directory) init() {
	d.ids = map[string]record{}
	d.live = map[string]liveRec{}
	d.groups = map[string]map[string]string{}
	d.watches = map[string]record{}
	d.mine = map[string]uint64{}
	d.mineGrp = map[string][]string{}
	d.rr = map[string]*uint64{}
}

func (d *directory) claimed(id string, r record, rev uint64) {
	d.mu.Lock()
	d.mine[id] = rev
	d.ids[id] = r
	d.mu.Unlock()
}

func (d *directory) released(id string) (rev uint64, groups []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rev = d.mine[id]
	groups = d.mineGrp[id]
	delete(d.mine, id)
	delete(d.mineGrp, id)
	return rev, groups
}

func (d *directory) joined(group, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.mine[id]; !ok {
		return false
	}
	for _, g := range d.mineGrp[id] {
		if g == group {
			return false
		}
	}
	d.mineGrp[id] = append(d.mineGrp[id], group)
	return true
}

func (d *directory) left(group, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	gs := d.mineGrp[id]
	for i, g := range gs {
		if g == group {
			d.mineGrp[id] = append(gs[:i:i], gs[i+1:]...)
			return true
		}
	}
	return false
}

// fresh reports whether l's renewals are current: seen within a lease,
// or seen no more than a lease before the last renewal of any daemon. The
// second case is the lease bucket stalling (its JetStream leader was cut
// off and the rest elect another, 4 to 9 s and more under load): no
// daemon's renewal arrives then, and none is taken for dead for it; a
// daemon that is gone stops renewing while the others go on. d.mu is held.
func (d *directory) fresh(l liveRec, lease time.Duration) bool {
	return time.Since(l.seen) < lease || d.lastLive.Sub(l.seen) < lease/2
}

// Lookup returns the daemon that holds id, if another live one does, as
// the directory knows it: a holder whose renewal has not been seen for a
// lease (the watch may be catching up) does not count; Find then asks the
// buckets.
func (n *Node) Lookup(id string) (node string, ok bool) {
	d := &n.dir
	d.mu.RLock()
	r, ok := d.ids[id]
	if ok {
		l, live := d.live[r.Node]
		ok = live && l.Epoch == r.Epoch && r.Node != n.cfg.Node && d.fresh(l, n.cfg.Lease)
	}
	d.mu.RUnlock()
	return r.Node, ok
}

// Daemons returns the other daemons with a lease in force.
func (n *Node) Daemons(dst []string) []string {
	n.dir.mu.RLock()
	for node := range n.dir.live {
		if node != n.cfg.Node {
			dst = append(dst, node)
		}
	}
	n.dir.mu.RUnlock()
	return dst
}

// RemoteMember is a group member held on another daemon.
type RemoteMember struct{ ID, Node string }

// GroupMembers returns group's members held on other live daemons, sorted,
// and a round-robin counter for the group across all its members.
func (n *Node) GroupMembers(group string, dst []RemoteMember) ([]RemoteMember, uint64) {
	d := &n.dir
	d.mu.RLock()
	for id, node := range d.groups[group] {
		if node == n.cfg.Node {
			continue
		}
		r, ok := d.ids[id]
		if l, live := d.live[node]; ok && live && r.Node == node && l.Epoch == r.Epoch {
			dst = append(dst, RemoteMember{id, node})
		}
	}
	d.mu.RUnlock()
	if len(dst) == 0 {
		return dst, 0
	}
	sort.Slice(dst, func(i, j int) bool { return dst[i].ID < dst[j].ID })
	d.mu.Lock()
	c := d.rr[group]
	if c == nil {
		c = new(uint64)
		d.rr[group] = c
	}
	*c++
	v := *c
	d.mu.Unlock()
	return dst, v
}

// Remotes returns the ids held on other live daemons.
func (n *Node) Remotes() []Remote {
	d := &n.dir
	d.mu.RLock()
	var out []Remote
	for id, r := range d.ids {
		if l, live := d.live[r.Node]; live && l.Epoch == r.Epoch && r.Node != n.cfg.Node {
			out = append(out, Remote{ID: id, Node: r.Node, Host: r.Host, ProcessName: r.ProcessName,
				RegisteredAt: fromMs(r.At), ConnectedAt: fromMs(r.Connected), SubscribedAt: fromMs(r.Subscribed)})
		}
	}
	d.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// follow watches both buckets and keeps the directory current.
func (n *Node) follow(ctx context.Context) error {
	lw, err := n.live.WatchAll(n.watchCtx)
	if err != nil {
		return n.errUnavailable("cannot watch the lease bucket", err)
	}
	iw, err := n.ids.WatchAll(n.watchCtx)
	if err != nil {
		lw.Stop()
		return n.errUnavailable("cannot watch the id bucket", err)
	}
	ready := make(chan struct{}, 2)
	n.wg.Add(2)
	go n.watchLoop(lw, ready, n.liveChanged)
	go n.watchLoop(iw, ready, n.idChanged)
	for range 2 {
		select {
		case <-ready:
		case <-ctx.Done():
			return n.errUnavailable("reading the directory", ctx.Err())
		}
	}
	return nil
}

func (n *Node) watchLoop(w jetstream.KeyWatcher, ready chan<- struct{}, apply func(jetstream.KeyValueEntry)) {
	defer n.wg.Done()
	defer w.Stop()
	for {
		select {
		case <-n.done:
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				ready <- struct{}{}
				continue
			}
			apply(e)
		}
	}
}

func deleted(e jetstream.KeyValueEntry) bool { return e.Operation() != jetstream.KeyValuePut }

func (n *Node) liveChanged(e jetstream.KeyValueEntry) {
	node, ok := strings.CutPrefix(e.Key(), "d.")
	if !ok {
		return
	}
	d := &n.dir
	d.mu.Lock()
	if deleted(e) {
		delete(d.live, node)
	} else {
		var l liveRec
		json.Unmarshal(e.Value(), &l)
		l.seen = time.Now()
		d.live[node] = l
		d.lastLive = l.seen
	}
	d.mu.Unlock()
	if deleted(e) && node != n.cfg.Node {
		n.log.Warn("federation: a daemon left; its ids are released", "node", node)
		n.flight.failAll(node, "daemon "+node+" left the federation")
		n.sweep(node)
	}
}

// sweep deletes the records of a daemon whose lease ended, so that
// listings stay clean; they are already invalid without it.
func (n *Node) sweep(node string) {
	if !n.leased() {
		return
	}
	n.background(func(ctx context.Context) {
		keys, err := n.ids.ListKeys(ctx)
		if err != nil {
			return
		}
		for k := range keys.Keys() {
			e, err := n.ids.Get(ctx, k)
			if err != nil {
				continue
			}
			var r record
			json.Unmarshal(e.Value(), &r)
			if r.Node == node {
				if ok, err := n.alive(ctx, r.Node, r.Epoch); err == nil && !ok {
					n.ids.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
				}
			}
		}
	})
}

func decodeKey(s string) (string, bool) {
	b, err := b64.DecodeString(s)
	return string(b), err == nil
}

func (n *Node) idChanged(e jetstream.KeyValueEntry) {
	parts := strings.Split(e.Key(), ".")
	var r record
	if !deleted(e) {
		json.Unmarshal(e.Value(), &r)
	}
	d := &n.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case len(parts) == 2 && parts[0] == "id":
		id, ok := decodeKey(parts[1])
		if !ok {
			return
		}
		if deleted(e) {
			delete(d.ids, id)
		} else {
			d.ids[id] = r
			n.misses.forget(id)
		}
	case len(parts) == 3 && parts[0] == "grp":
		g, ok1 := decodeKey(parts[1])
		id, ok2 := decodeKey(parts[2])
		if !ok1 || !ok2 {
			return
		}
		if deleted(e) {
			if m := d.groups[g]; m != nil {
				delete(m, id)
				if len(m) == 0 {
					delete(d.groups, g)
				}
			}
			return
		}
		m := d.groups[g]
		if m == nil {
			m = map[string]string{}
			d.groups[g] = m
		}
		m[id] = r.Node
	case len(parts) == 3 && parts[0] == "w":
		if deleted(e) {
			delete(d.watches, e.Key())
		} else if r.Node != n.cfg.Node {
			d.watches[e.Key()] = r
		}
	}
}

func (n *Node) watchKey(id uint64) string {
	return "w." + n.cfg.Node + "." + strconv.FormatUint(id, 10)
}

// AddWatch publishes a watch installed here, so that events routed on
// other daemons are copied to it.
func (n *Node) AddWatch(id uint64, eventName, source, target string) {
	v, _ := json.Marshal(record{Node: n.cfg.Node, Epoch: n.currentEpoch(), EventName: eventName, Source: source, Target: target})
	n.background(func(ctx context.Context) { n.ids.Put(ctx, n.watchKey(id), v) })
}

// RemoveWatch withdraws a watch installed here.
func (n *Node) RemoveWatch(id uint64) {
	n.background(func(ctx context.Context) { n.ids.Delete(ctx, n.watchKey(id)) })
}

// MatchWatches calls fn for each watch on another live daemon whose
// filter matches the event.
func (n *Node) MatchWatches(name, source, target string, fn func(node string, watchID uint64)) {
	d := &n.dir
	d.mu.RLock()
	if len(d.watches) == 0 {
		d.mu.RUnlock()
		return
	}
	type hit struct {
		node string
		id   uint64
	}
	var hits []hit
	for k, r := range d.watches {
		l, live := d.live[r.Node]
		if !live || l.Epoch != r.Epoch {
			continue
		}
		f := router.Filter{EventName: r.EventName, Source: r.Source, Target: r.Target}
		if f.Matches(name, source, target) {
			id, _ := strconv.ParseUint(k[strings.LastIndexByte(k, '.')+1:], 10, 64)
			hits = append(hits, hit{r.Node, id})
		}
	}
	d.mu.RUnlock()
	for _, h := range hits {
		fn(h.node, h.id)
	}
}
