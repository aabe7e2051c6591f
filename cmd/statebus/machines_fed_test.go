package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/fedtest"
)

// TestMachinesFederation: ids held on another daemon of a federation are
// listed with that daemon, with the connection's real connect time (not
// "2562047h47m" from a zero time) and whether they subscribed.
func TestMachinesFederation(t *testing.T) {
	ds := fedtest.Start(t, 2, nil, nil)
	dial(t, "here", statebus.WithPipeName(ds[0].Sock))
	connected := time.Now()
	dial(t, "there", statebus.WithPipeName(ds[1].Sock)) // registers, then subscribes
	fedtest.Seen(t, ds[0], "there")

	flag := []string{"--pipe-name", ds[0].Sock}
	var ms []statebus.MachineInfo
	// The subscription is recorded a moment after the registration.
	bustest.Eventually(t, 10*time.Second, func() bool {
		r := runCmd(t, "", args(flag, "machines", "--json")...)
		if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil || r.code != 0 {
			t.Fatalf("--json: exit %d, %v:\n%s", r.code, err, r.stdout)
		}
		return len(ms) == 2 && ms[1].Subscribed
	}, "n1 never listed there as subscribed: %+v", &ms)
	if len(ms) != 2 || ms[1].MachineID != "there" {
		t.Fatalf("machines: %+v", ms)
	}
	there := ms[1]
	if there.Daemon != "n2" || there.Host != "host2" || there.PeerPID != -1 {
		t.Errorf("there: daemon %q host %q pid %d", there.Daemon, there.Host, there.PeerPID)
	}
	if d := there.ConnectedAt.Sub(connected); d < -2*time.Second || d > 10*time.Second {
		t.Errorf("there connected at %v, the test dialed it at %v", there.ConnectedAt, connected)
	}
	if !there.Subscribed || there.SubscribedAt == nil || there.SubscribedAt.Before(there.ConnectedAt.Add(-time.Second)) {
		t.Errorf("there: Subscribed %v at %v", there.Subscribed, there.SubscribedAt)
	}

	r := runCmd(t, "", args(flag, "machines")...)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasSuffix(lines[0], "DAEMON") {
		t.Fatalf("exit %d:\n%s", r.code, r.stdout)
	}
	f := strings.Fields(lines[2])
	// there  0  -  -  -  DATE TIME  AGE  n2@host2
	if len(f) != 9 || f[0] != "there" || f[2] != "-" || f[8] != "n2@host2" {
		t.Fatalf("row %q", lines[2])
	}
	if age := f[7]; strings.Contains(age, "h") || age == "-" {
		t.Errorf("there connected for %q, want seconds", age)
	}
	if f := strings.Fields(lines[1]); len(f) != 9 || f[0] != "here" || f[2] != strconv.Itoa(os.Getpid()) {
		t.Errorf("row %q", lines[1])
	}
}

// TestConnectedFor: a connect time nobody reported shows "-".
func TestConnectedFor(t *testing.T) {
	now := time.Now()
	if got := connectedFor(now, time.Time{}); got != "-" {
		t.Errorf("zero time: %q", got)
	}
	if got := connectedFor(now, now.Add(-42*time.Second)); got != "42s" {
		t.Errorf("42s ago: %q", got)
	}
}
