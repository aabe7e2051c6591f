//go:build linux

// The federation process tests run statebusd children, kill them with
// signals and cut links with network namespaces: Linux only.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/fedtest"
)

// fedProc is a statebusd child process in a federation (Cluster
// embedded): the test binary run as statebusd, possibly through a wrapper
// such as "ip netns exec NS".
type fedProc struct {
	name   string
	sock   string
	cmd    *exec.Cmd
	stderr *bustest.Buffer
	exited chan struct{}
}

// fedSpec is one daemon of a test federation.
type fedSpec struct {
	wrap  []string // command run before the test binary, or none
	route string   // host:port of its route listener
	lease int      // ClusterLeaseSeconds (default 2)
	args  []string // more statebusd arguments
}

// startFedProcs starts the daemons n1..nN at once (their JetStream needs
// the others to form), each with an embedded nats-server node routed to
// the others', and waits until each serves its socket.
func startFedProcs(t *testing.T, dir string, specs []fedSpec) []*fedProc {
	t.Helper()
	ps := make([]*fedProc, len(specs))
	for i, sp := range specs {
		var routes []string
		for j, o := range specs {
			if j != i {
				routes = append(routes, "nats-route://"+o.route)
			}
		}
		name := "n" + strconv.Itoa(i+1)
		p := &fedProc{name: name, sock: filepath.Join(dir, name+".sock"), stderr: &bustest.Buffer{}, exited: make(chan struct{})}
		args := append(append([]string(nil), sp.wrap...), os.Args[0],
			"--pipe-name", p.sock, "--log-level", "info",
			"--cluster", "embedded", "--cluster-name", "proc", "--cluster-node", name,
			"--cluster-route-listen", sp.route, "--cluster-routes", strings.Join(routes, ","),
			"--cluster-store-dir", filepath.Join(dir, name+"-js"),
			"--cluster-lease", strconv.Itoa(max(sp.lease, 2)), "--cluster-ack-timeout", "5")
		args = append(args, sp.args...)
		p.cmd = exec.Command(args[0], args[1:]...)
		p.cmd.Env = append(os.Environ(), "STATEBUSD_TEST_MAIN=1")
		p.cmd.Stderr = p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.cmd.Wait(); close(p.exited) }()
		t.Cleanup(func() { p.kill() })
		ps[i] = p
	}
	for _, p := range ps {
		p.waitServing(t, 120*time.Second)
	}
	return ps
}

// waitServing polls until the daemon answers Health on its socket.
func (p *fedProc) waitServing(t *testing.T, timeout time.Duration) {
	t.Helper()
	bustest.Eventually(t, timeout, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.stderr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		h, err := statebus.Health(ctx, statebus.WithPipeName(p.sock))
		return err == nil && h.IsHealthy
	}, "%s never served %s:\n%s", p.name, p.sock, p.stderr)
}

// kill ends the daemon as a crash would (SIGKILL) and waits for it.
func (p *fedProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *fedProc) dial(t *testing.T, id string) (*statebus.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := statebus.Dial(ctx, id, statebus.WithPipeName(p.sock), statebus.WithReconnect(false))
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (p *fedProc) mustDial(t *testing.T, id string) *statebus.Client {
	t.Helper()
	c, err := p.dial(t, id)
	if err != nil {
		t.Fatalf("%s on %s: %v\n%s", id, p.name, err, p.stderr)
	}
	return c
}

// reachable waits until from's daemon routes to id (held elsewhere):
// three pings in a row arrive (right after a partition heals, the
// directories of the daemons catch up for a moment).
func reachable(t *testing.T, from *statebus.Client, id string, timeout time.Duration) {
	t.Helper()
	ok := 0
	bustest.Eventually(t, timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if from.SendEvent(ctx, id, "ping", nil) != nil {
			ok = 0
			return false
		}
		ok++
		return ok == 3
	}, "%s never reached %s", from.ID(), id)
}

// counter counts events named name that a client receives.
func counter(c *statebus.Client, name string) *atomic.Int64 {
	var n atomic.Int64
	c.OnEvent(name, func(statebus.Event) { n.Add(1) })
	return &n
}

// lazy formats as what f returns when the message is made, for
// Eventually's messages about a value its condition sets.
type lazy func() any

func (l lazy) String() string { return fmt.Sprint(l()) }

// untilNotConnected sends from from to id until its daemon answers
// "Target machine not connected", within timeout, and returns the
// "Failed to deliver" errors before; any other answer fails the test.
func untilNotConnected(t *testing.T, from *statebus.Client, id string, timeout time.Duration) []string {
	t.Helper()
	var errs []string
	bustest.Eventually(t, timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err := from.SendEvent(ctx, id, "x", nil)
		switch {
		case errors.Is(err, statebus.ErrTargetNotConnected):
			return true
		case errors.Is(err, statebus.ErrDeliveryFailed):
			errs = append(errs, err.Error())
			return false
		default:
			t.Fatalf("%s -> %s: %v (want delivery failed, then not connected)", from.ID(), id, err)
			return false
		}
	}, "%s -> %s never said not connected", from.ID(), id)
	return errs
}

// TestFederationEmbeddedProcesses: three statebusd processes with
// --cluster embedded, routed on 127.0.0.1: events cross in order with
// acks, a broadcast reaches every daemon, and when one daemon is killed
// (SIGKILL) its senders get errors, not silence, and its id is claimable
// on another daemon once its lease ran out.
func TestFederationEmbeddedProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three statebusd processes with nats-server nodes")
	}
	dir := shortDir(t)
	var specs []fedSpec
	for _, p := range fedtest.FreePorts(t, 3) {
		// Killing n3 may kill the lease bucket's leader: see partitionLease.
		specs = append(specs, fedSpec{route: "127.0.0.1:" + strconv.Itoa(p), lease: partitionLease})
	}
	ps := startFedProcs(t, dir, specs)
	a, b := ps[0].mustDial(t, "a"), ps[1].mustDial(t, "b")
	c := ps[2].mustDial(t, "c")
	allB, allC := counter(b, "all"), counter(c, "all")
	reachable(t, a, "c", 20*time.Second)

	const n = 200
	var order []int
	orderCh := make(chan int, n)
	c.OnEvent("ord", func(e statebus.Event) {
		var v int
		e.Decode(&v)
		orderCh <- v
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range n {
		if err := a.SendEvent(ctx, "c", "ord", i); err != nil {
			t.Fatalf("a -> c %d: %v", i, err)
		}
	}
	for range n {
		select {
		case v := <-orderCh:
			order = append(order, v)
		case <-ctx.Done():
			t.Fatalf("got %d of %d events", len(order), n)
		}
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("event %d arrived as %d", i, v)
		}
	}

	reachable(t, a, "b", 20*time.Second)
	ack, err := a.SendEventAck(ctx, "*", "all", nil)
	if err != nil || ack.Recipients == nil || *ack.Recipients != 2 {
		t.Fatalf("broadcast from n1: %+v, %v; want 2 recipients (b on n2, c on n3)", ack, err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return allB.Load() == 1 && allC.Load() == 1 }, "broadcast not received")

	// Kill n3: a's sends to c are answered with errors until its lease
	// is gone, then "Target machine not connected"; c is claimable on n2.
	killed := time.Now()
	ps[2].kill()
	errs := untilNotConnected(t, a, "c", partitionLease*time.Second+30*time.Second)
	t.Logf("n3 killed: 'Target machine not connected: c' after %v (%d 'Failed to deliver' before: %v)", time.Since(killed).Round(time.Millisecond), len(errs), errs)
	var c2 *statebus.Client
	bustest.Eventually(t, 60*time.Second, func() bool {
		c2, err = ps[1].dial(t, "c")
		return err == nil
	}, "c never claimable on n2: %v", lazy(func() any { return err }))
	t.Logf("c claimable on n2 %v after n3 was killed", time.Since(killed).Round(time.Millisecond))
	all2 := counter(c2, "all2")
	reachable(t, a, "c", 20*time.Second)
	ack, err = a.SendEventAck(ctx, "*", "all2", nil)
	if err != nil || ack.Recipients == nil || *ack.Recipients != 2 {
		t.Fatalf("broadcast after n3 died: %+v, %v; want 2 (b and c on n2)", ack, err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return all2.Load() == 1 }, "c on n2 missed the broadcast")
}

// netns runs ip with args, failing the test on error.
func netns(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// partitionNet makes a hub network namespace with a bridge and n
// namespaces each linked to it by a veth pair, with addresses
// 10.237.0.1..n/24; the host's own namespace is not touched. It returns
// the namespaces' names and cut/heal functions for namespace i's link.
// Everything is removed when the test ends.
func partitionNet(t *testing.T, n int) (names []string, cut, heal func(i int)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (ip netns add)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) for network namespaces")
	}
	sweepNamespaces()
	tag := strconv.Itoa(os.Getpid())
	hub := "sbhub" + tag
	if out, err := exec.Command("ip", "netns", "add", hub).CombinedOutput(); err != nil {
		t.Skipf("cannot make network namespaces here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", hub).Run() })
	netns(t, "-n", hub, "link", "add", "br0", "type", "bridge")
	netns(t, "-n", hub, "link", "set", "br0", "up")
	hubSide := func(i int) string { return "h" + strconv.Itoa(i) + "-" + tag }
	for i := range n {
		ns := "sbns" + strconv.Itoa(i+1) + "-" + tag
		netns(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		netns(t, "-n", hub, "link", "add", hubSide(i), "type", "veth", "peer", "name", "eth0", "netns", ns)
		netns(t, "-n", hub, "link", "set", hubSide(i), "master", "br0")
		netns(t, "-n", hub, "link", "set", hubSide(i), "up")
		netns(t, "-n", ns, "addr", "add", "10.237.0."+strconv.Itoa(i+1)+"/24", "dev", "eth0")
		netns(t, "-n", ns, "link", "set", "eth0", "up")
		netns(t, "-n", ns, "link", "set", "lo", "up")
		names = append(names, ns)
	}
	cut = func(i int) { netns(t, "-n", hub, "link", "set", hubSide(i), "down") }
	heal = func(i int) { netns(t, "-n", hub, "link", "set", hubSide(i), "up") }
	return names, cut, heal
}

const partitionLease = 15

// sweepNamespaces deletes the namespaces of earlier runs of this test
// whose process is gone (a run killed before its cleanups): their names
// end in that process's pid.
func sweepNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		rest, ok := strings.CutPrefix(name, "sbhub")
		if !ok {
			if rest, ok = strings.CutPrefix(name, "sbns"); ok {
				_, rest, ok = strings.Cut(rest, "-")
			}
		}
		pid, err := strconv.Atoi(rest)
		if !ok || err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		exec.Command("ip", "netns", "del", name).Run()
	}
}

// TestFederationPartition: three statebusd (Cluster embedded), each in a
// network namespace of its own, linked through a bridge. Cutting n3's
// link leaves n1 and n2 with the JetStream majority: n3 closes its
// clients once its lease ran out and refuses registrations with
// "Federation unavailable: ..."; n1 and n2 keep their ids, and n3's id is
// claimable there after the lease, sends to it answered with errors
// meanwhile. Healing the link: n3 registers again, and the id claimed on
// the majority side stays there.
func TestFederationPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three statebusd processes with nats-server nodes")
	}
	names, cut, heal := partitionNet(t, 3)
	dir := shortDir(t)
	var specs []fedSpec
	for i, ns := range names {
		// The lease outlasts a JetStream leader election (nats-server
		// waits 4 to 9 s before electing another leader): cutting off
		// the node that leads the lease bucket stalls every renewal
		// until then, and a shorter lease would make every daemon,
		// not only n3, give up its ids (docs/federation.md).
		specs = append(specs, fedSpec{wrap: []string{"ip", "netns", "exec", ns}, route: "10.237.0." + strconv.Itoa(i+1) + ":6222", lease: partitionLease})
	}
	ps := startFedProcs(t, dir, specs) // Unix sockets: reachable from here, whatever the namespace
	a, b := ps[0].mustDial(t, "a"), ps[1].mustDial(t, "b")
	c := ps[2].mustDial(t, "c")
	reachable(t, a, "c", 30*time.Second)
	reachable(t, c, "b", 30*time.Second)

	start := time.Now()
	cut(2)
	// The minority side: n3 closes c once its lease is over, then refuses.
	select {
	case <-c.Done():
		t.Logf("partition: n3 closed c after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(partitionLease*time.Second + 15*time.Second):
		t.Fatalf("n3 kept c for a lease + 15s after it was cut off:\n%s", ps[2].stderr)
	}
	var err error
	bustest.Eventually(t, 20*time.Second, func() bool {
		var z *statebus.Client
		z, err = ps[2].dial(t, "z")
		if err == nil {
			z.Close()
		}
		return errors.Is(err, statebus.ErrFederation) &&
			strings.Contains(err.Error(), ": Federation unavailable: cannot claim z: this daemon's lease has lapsed; retry when NATS is reachable")
	}, "cut-off n3 did not refuse with Federation unavailable: %v", lazy(func() any { return err }))
	t.Logf("partition: n3 answers %q", err)

	// The majority side keeps its ids and gets c after the lease; sends
	// to c meanwhile are answered with errors, never silence.
	sendErrs := untilNotConnected(t, a, "c", partitionLease*time.Second+30*time.Second)
	t.Logf("partition: a -> c 'Target machine not connected' after %v (before: %v)", time.Since(start).Round(time.Millisecond), sendErrs)
	// Claiming writes the ids bucket: if its JetStream leader was n3's
	// node, the majority elects another first (seconds), and claims
	// meanwhile are refused with "Federation unavailable".
	var c2 *statebus.Client
	var claimErrs []string
	bustest.Eventually(t, 60*time.Second, func() bool {
		c2, err = ps[1].dial(t, "c")
		if err != nil {
			claimErrs = append(claimErrs, err.Error())
		}
		return err == nil
	}, "c never claimable on n2: %v", lazy(func() any { return err }))
	t.Logf("partition: c claimed on n2 %v after the cut (%d refusals before)", time.Since(start).Round(time.Millisecond), len(claimErrs))
	if len(claimErrs) > 0 {
		t.Logf("partition: first refusal: %s", claimErrs[0])
	}
	got := counter(c2, "hello")
	// n1 learns of the new holder from its watch of the ids bucket, or a
	// read of it, either of which may lag a moment behind the claim.
	reachable(t, a, "c", 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.SendEvent(ctx, "c", "hello", nil); err != nil {
		t.Fatalf("a -> c on n2: %v\nn1:\n%s\nn2:\n%s", err, ps[0].stderr, ps[1].stderr)
	}
	if err := b.SendEvent(ctx, "a", "hello", nil); err != nil {
		t.Fatalf("b -> a during the partition: %v", err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return got.Load() == 1 }, "c on n2 got nothing")

	// Heal: n3 takes registrations again; c stays on n2.
	healed := time.Now()
	heal(2)
	var z *statebus.Client
	bustest.Eventually(t, 60*time.Second, func() bool {
		z, err = ps[2].dial(t, "z")
		return err == nil
	}, "n3 never took registrations after the heal: %v\n%s", lazy(func() any { return err }), ps[2].stderr)
	t.Logf("healed: n3 registers again after %v", time.Since(healed).Round(time.Millisecond))
	// Right after the heal n3's JetStream replicas catch up, and a claim
	// may time out or be refused as unavailable meanwhile; the only
	// wrong answer is success (two holders of c).
	var healErrs []string
	bustest.Eventually(t, 60*time.Second, func() bool {
		c3, err := ps[2].dial(t, "c")
		if err == nil {
			c3.Close()
			t.Fatalf("c registered on n3 after the heal while n2 holds it (refusals before: %v)", healErrs)
		}
		if errors.Is(err, statebus.ErrIDInUse) {
			return true
		}
		healErrs = append(healErrs, err.Error())
		return false
	}, "c on n3 after the heal was never refused as in use: %v", lazy(func() any { return healErrs }))
	if len(healErrs) > 0 {
		t.Logf("healed: c on n3 refused as in use after %d other answers, first: %s", len(healErrs), healErrs[0])
	}
	hz := counter(z, "hi")
	reachable(t, a, "z", 30*time.Second)
	if err := a.SendEvent(ctx, "z", "hi", nil); err != nil {
		t.Fatalf("a -> z on n3 after the heal: %v", err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return hz.Load() == 1 }, "z on n3 got nothing")
}
