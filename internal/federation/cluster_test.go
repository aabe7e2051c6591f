package federation_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/fedtest"
	"github.com/statebus/statebus/internal/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append([]goleak.Option{bustest.IgnoreWinio}, fedtest.LeakOptions...)...)
}

func freePorts(t *testing.T, n int) []int { return fedtest.FreePorts(t, n) }

// daemon is one statebusd of a test federation.
type daemon struct {
	node *federation.Node
	srv  *server.Server
	sock string
}

const testLease = fedtest.Lease

// startFederation runs n statebusd in this process, each with an embedded
// nats-server node, clustered by routes on 127.0.0.1.
func startFederation(t *testing.T, n int, edit func(*server.Config)) []*daemon {
	t.Helper()
	var ds []*daemon
	for _, d := range fedtest.Start(t, n, nil, edit) {
		ds = append(ds, &daemon{node: d.Node, srv: d.Srv, sock: d.Sock})
	}
	return ds
}

func dial(t *testing.T, d *daemon, id string, opts ...statebus.Option) *statebus.Client {
	t.Helper()
	return fedtest.Dial(t, &fedtest.Daemon{Node: d.node, Srv: d.srv, Sock: d.sock}, id, opts...)
}

// seen waits until daemon d's directory knows id is held elsewhere.
func seen(t *testing.T, d *daemon, id string) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, func() bool { _, ok := d.node.Lookup(id); return ok },
		"%s never saw %s", d.node.Name(), id)
}

func ctx10() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func TestFederationOwnershipAndUnicast(t *testing.T) {
	ds := startFederation(t, 3, nil)
	a := dial(t, ds[0], "alice")
	b := dial(t, ds[1], "bob")

	// One id space: bob is held on n2, so n1 and n3 refuse it.
	for _, d := range []*daemon{ds[0], ds[2]} {
		ctx, cancel := ctx10()
		_, err := statebus.Dial(ctx, "bob", statebus.WithPipeName(d.sock), statebus.WithReconnect(false))
		cancel()
		if !errors.Is(err, statebus.ErrIDInUse) {
			t.Fatalf("bob on %s: %v, want id in use", d.node.Name(), err)
		}
	}

	// Events cross daemons in order, each acknowledged once written.
	const n = 200
	got := make(chan int, n)
	b.OnEvent("seq", func(e statebus.Event) {
		var v int
		e.Decode(&v)
		got <- v
	})
	for i := range n {
		ctx, cancel := ctx10()
		err := a.SendEvent(ctx, "bob", "seq", i)
		cancel()
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for i := range n {
		select {
		case v := <-got:
			if v != i {
				t.Fatalf("event %d arrived as %d", i, v)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d never arrived", i)
		}
	}

	// No daemon holds carol: the exact local error.
	ctx, cancel := ctx10()
	err := a.SendEvent(ctx, "carol", "x", nil)
	cancel()
	if !errors.Is(err, statebus.ErrTargetNotConnected) || err.Error() == "" {
		t.Fatalf("to carol: %v", err)
	}

	// Released when bob leaves: re-claimable on another daemon.
	b.Close()
	bustest.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := ctx10()
		defer cancel()
		c, err := statebus.Dial(ctx, "bob", statebus.WithPipeName(ds[2].sock), statebus.WithReconnect(false))
		if err != nil {
			return false
		}
		t.Cleanup(func() { c.Close() })
		return true
	}, "bob never re-claimable on n3")
	seen(t, ds[0], "bob")
	if fmt.Sprint(ds[0].node.Remotes()) == "" {
		t.Fatal("no remotes")
	}
}
