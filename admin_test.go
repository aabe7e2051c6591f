package statebus_test

import (
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

func TestHealthAndMachines(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "machine-a", statebus.WithProcessName("proc-a"))
	dial(t, srv, "machine-b")
	h, err := statebus.Health(ctx(t), statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	// The asking connection counts; it holds no machine id.
	if !h.IsHealthy || h.ConnectionCount != 3 || h.RegisteredMachines != 2 ||
		h.PeakConnections != 3 || h.MaxConnections != 100 || h.UptimeSeconds <= 0 || h.Version == "" {
		t.Fatalf("health %+v", h)
	}
	// Questions are not activity: asking does not move LastActivityAt.
	h2, err := a.Health(ctx(t))
	if err != nil || !h2.LastActivityAt.Equal(h.LastActivityAt) {
		t.Fatalf("LastActivityAt moved from %v to %v by a Health request (%v)", h.LastActivityAt, h2.LastActivityAt, err)
	}
	ms, err := a.Machines(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].MachineID != "machine-a" || ms[0].ProcessName != "proc-a" ||
		ms[0].PeerPID <= 0 || ms[0].SubscribedAt == nil || ms[0].ConnectedAt.IsZero() ||
		ms[1].MachineID != "machine-b" || ms[0].ConnectionID == ms[1].ConnectionID {
		t.Fatalf("machines %+v", ms)
	}
	a.Close()
	bustest.Eventually(t, 5*time.Second, func() bool {
		h, err = statebus.Health(ctx(t), statebus.WithPipeName(srv.Addr()))
		return err == nil && h.ConnectionCount == 2 && h.RegisteredMachines == 1
	}, "after close: %+v %v", h, err)
}
