// Package fedtest runs test federations: statebusd servers in this
// process, each with an embedded nats-server node, clustered by routes on
// 127.0.0.1. It owns nothing outside tests.
package fedtest

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/wine"
)

// LeakOptions are goleak's exceptions for tests that run nats-server
// nodes: nats-server keeps a few process-wide goroutines after Shutdown.
var LeakOptions = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
	goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start"),
}

// SkipLargeClusterUnderWine skips a test that needs a JetStream cluster
// of n >= 3 nodes when it runs under Wine, which cannot run one: as soon
// as the three nodes elect a metadata leader, nats-server snapshots the
// meta group and its file store removes the old blocks with
// os.RemoveAll, which Go does on Windows with
// NtSetInformationFile(FileDispositionInformationEx). Wine 8 does not
// implement that ("unlinkat ...\_meta_\__msgs__\1.blk: Invalid
// function"), nats-server takes it as a critical write error and the
// meta group never has a leader again. Two-node clusters do not snapshot
// at once and run. A real Windows has the call.
func SkipLargeClusterUnderWine(t testing.TB, n int) {
	t.Helper()
	if n >= 3 && wine.Running() {
		t.Skipf("Wine cannot run a JetStream cluster of %d nodes: nats-server's first meta snapshot calls os.RemoveAll, which needs FileDispositionInformationEx (not in Wine 8): critical write error, no meta leader", n)
	}
}

// Lease is the test federations' lease: short, so that deaths show soon.
const Lease = 2 * time.Second

// FreePorts returns n ports free on 127.0.0.1 a moment ago.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// Daemon is one statebusd of a test federation.
type Daemon struct {
	Node *federation.Node
	Srv  *server.Server
	Sock string
}

// Start runs n statebusd in this process, nodes n1..nN on hosts
// host1..hostN, each with an embedded nats-server node, clustered by
// routes on 127.0.0.1. fedit edits each node's federation settings, edit
// each server's. Everything stops when the test ends.
func Start(t testing.TB, n int, fedit func(*federation.Config), edit func(*server.Config)) []*Daemon {
	t.Helper()
	SkipLargeClusterUnderWine(t, n)
	ports := FreePorts(t, n)
	nodes := make([]*federation.Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
			}
		}
		cfg := federation.Config{Mode: federation.Embedded, Name: "test", Node: "n" + strconv.Itoa(i+1), Host: "host" + strconv.Itoa(i+1),
			RouteListen: "127.0.0.1:" + strconv.Itoa(ports[i]), Routes: routes, StoreDir: bustest.TempDir(t),
			Lease: Lease, AckTimeout: 5 * time.Second, StartTimeout: 90 * time.Second}
		if fedit != nil {
			fedit(&cfg)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = federation.Start(context.Background(), cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, nd := range nodes {
				if nd != nil {
					nd.Close()
				}
			}
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	ds := make([]*Daemon, n)
	for i, nd := range nodes {
		t.Cleanup(nd.Close) // after the server's shutdown (cleanups run last first)
		srv := bustest.Start(t, func(c *server.Config) {
			c.Federation = nd
			c.SlowConsumerTimeout = 2 * time.Second
			if edit != nil {
				edit(c)
			}
		})
		ds[i] = &Daemon{Node: nd, Srv: srv, Sock: srv.Addr()}
	}
	return ds
}

// Dial connects a client as id to daemon d, without reconnecting; it is
// closed when the test ends.
func Dial(t testing.TB, d *Daemon, id string, opts ...statebus.Option) *statebus.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := statebus.Dial(ctx, id, append([]statebus.Option{statebus.WithPipeName(d.Sock), statebus.WithReconnect(false)}, opts...)...)
	if err != nil {
		t.Fatalf("dial %s on %s: %v", id, d.Node.Name(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Seen waits until daemon d's directory knows id is held elsewhere.
func Seen(t testing.TB, d *Daemon, id string) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, func() bool { _, ok := d.Node.Lookup(id); return ok },
		"%s never saw %s", d.Node.Name(), id)
}
