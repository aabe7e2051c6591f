package federation_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/fedtest"
	"github.com/statebus/statebus/internal/server"
)

// natsCluster starts n nats-server nodes with JetStream, clustered by
// routes on 127.0.0.1, and returns them with their client URLs.
func natsCluster(t *testing.T, n int) ([]*natsserver.Server, []string) {
	t.Helper()
	fedtest.SkipLargeClusterUnderWine(t, n)
	ports := freePorts(t, 2*n)
	servers := make([]*natsserver.Server, n)
	urls := make([]string, n)
	for i := range n {
		opts := &natsserver.Options{ServerName: "nats" + strconv.Itoa(i+1), Host: "127.0.0.1", Port: ports[i],
			JetStream: true, StoreDir: bustest.TempDir(t), NoSigs: true, NoLog: true,
			Cluster: natsserver.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: ports[n+i]}}
		for j := range n {
			if j != i {
				opts.Routes = append(opts.Routes, natsserver.RoutesFromStr("nats-route://127.0.0.1:"+strconv.Itoa(ports[n+j]))...)
			}
		}
		s, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatalf("nats%d did not start", i+1)
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers[i], urls[i] = s, s.ClientURL()
	}
	return servers, urls
}

// TestFederationKill: three nats-server nodes, three statebusd in
// external mode with clients; one daemon and one NATS node die mid-stream.
// No acknowledged event is lost, every other one is answered with an
// error, and the dead daemon's ids are released and can be claimed again.
func TestFederationKill(t *testing.T) {
	nss, urls := natsCluster(t, 3)
	nodes := make([]*federation.Node, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		cfg := federation.Config{Mode: federation.External, Name: "kill", Node: "d" + strconv.Itoa(i+1),
			URLs: append([]string{urls[i]}, append(urls[:i:i], urls[i+1:]...)...), Replicas: 3,
			Lease: testLease, AckTimeout: 3 * time.Second, StartTimeout: 60 * time.Second}
		wg.Add(1)
		go func() { defer wg.Done(); nodes[i], errs[i] = federation.Start(context.Background(), cfg) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, nd := range nodes {
				if nd != nil {
					nd.Close()
				}
			}
			t.Fatalf("d%d: %v", i+1, err)
		}
	}
	ds := make([]*daemon, 3)
	for i, nd := range nodes {
		t.Cleanup(nd.Close)
		srv := bustest.Start(t, func(c *server.Config) { c.Federation = nd })
		ds[i] = &daemon{node: nd, srv: srv, sock: srv.Addr()}
	}
	sender := dial(t, ds[0], "s1")
	type rx struct {
		mu  sync.Mutex
		got map[int]bool
	}
	targets := []string{"r2", "r3"}
	rxs := map[string]*rx{}
	for i, id := range targets {
		r := &rx{got: map[int]bool{}}
		rxs[id] = r
		c := dial(t, ds[i+1], id)
		c.OnEvent("n", func(e statebus.Event) {
			var v int
			e.Decode(&v)
			r.mu.Lock()
			r.got[v] = true
			r.mu.Unlock()
		})
		seen(t, ds[0], id)
	}

	// Stream to both, one event at a time per target, until well after
	// the kills.
	type result struct {
		acked, failed []int
		silent        int
	}
	results := map[string]*result{}
	stop := make(chan struct{})
	var sends sync.WaitGroup
	for _, id := range targets {
		res := &result{}
		results[id] = res
		sends.Add(1)
		go func() {
			defer sends.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := sender.SendEvent(ctx, id, "n", i)
				cancel()
				switch {
				case err == nil:
					res.acked = append(res.acked, i)
				case errors.Is(err, context.DeadlineExceeded):
					res.silent++
				default:
					res.failed = append(res.failed, i)
				}
			}
		}()
	}
	progress := func(id string, n int) {
		bustest.Eventually(t, 20*time.Second, func() bool {
			rxs[id].mu.Lock()
			defer rxs[id].mu.Unlock()
			return len(rxs[id].got) >= n
		}, "%s stalled", id)
	}
	progress("r2", 200)
	progress("r3", 200)

	// Kill d3 as a crash would (its lease is never given back) and the
	// NATS node d2 is connected to.
	killedAt := time.Now()
	ds[2].node.Crash()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	ds[2].srv.Shutdown(sctx)
	cancel()
	conn := ds[1].node.ConnectedURL()
	for i, ns := range nss {
		if ns.ClientURL() == conn {
			ns.Shutdown()
			t.Logf("killed nats%d (d2's)", i+1)
		}
	}
	rxs["r2"].mu.Lock()
	n2 := len(rxs["r2"].got)
	rxs["r2"].mu.Unlock()
	progress("r2", n2+200) // traffic to d2 resumes through another node

	// d3's ids are released cluster-wide within the lease: r3 can be
	// claimed on d1, and until then senders get errors, not silence.
	// The probe holds r3 for a moment and the senders go on: what it is
	// given is acknowledged, so it counts as r3's.
	record := func(e statebus.Event) {
		var v int
		e.Decode(&v)
		r := rxs["r3"]
		r.mu.Lock()
		r.got[v] = true
		r.mu.Unlock()
	}
	bustest.Eventually(t, 3*testLease+5*time.Second, func() bool {
		ctx, cancel := ctx10()
		defer cancel()
		c, err := statebus.Dial(ctx, "r3", statebus.WithPipeName(ds[1].sock), statebus.WithReconnect(false),
			statebus.WithHandler("n", record))
		if err != nil {
			return false
		}
		// Drain: the handler runs every event the probe was given (Close
		// would drop those not handled yet).
		if err := c.Drain(ctx); err != nil {
			t.Errorf("draining the r3 probe: %v", err)
		}
		return true
	}, "r3 never re-claimable after d3 died")
	t.Logf("r3 re-claimable %v after the kill (lease %v)", time.Since(killedAt).Round(time.Millisecond), testLease)
	close(stop)
	sends.Wait()

	for _, id := range targets {
		res, r := results[id], rxs[id]
		r.mu.Lock()
		lost := 0
		for _, v := range res.acked {
			if !r.got[v] {
				lost++
			}
		}
		r.mu.Unlock()
		t.Logf("%s: %d acknowledged, %d answered with an error, %d silent", id, len(res.acked), len(res.failed), res.silent)
		if lost > 0 {
			t.Errorf("%s: %d acknowledged events never arrived", id, lost)
		}
		if res.silent > 0 {
			t.Errorf("%s: %d events got no answer at all", id, res.silent)
		}
	}
	if len(results["r3"].failed) == 0 {
		t.Error("no event to the dead daemon's id failed")
	}
	ctx, cancel2 := ctx10()
	defer cancel2()
	if err := sender.SendEvent(ctx, "r3", "n", -1); !errors.Is(err, statebus.ErrTargetNotConnected) {
		t.Fatalf("to r3 after its daemon died: %v, want not connected", err)
	}
}
