package main

import (
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/statebus/statebus"
)

func TestMachines(t *testing.T) {
	flag, opt := startBus(t)
	r := runCmd(t, "", args(flag, "machines")...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "No machines are registered on ") {
		t.Errorf("empty registry: exit %d, %q", r.code, r.stdout)
	}
	r = runCmd(t, "", args(flag, "machines", "--json")...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty registry --json: exit %d, %q", r.code, r.stdout)
	}

	dial(t, "machine-b", opt)
	dial(t, "machine-a", opt)
	r = runCmd(t, "", args(flag, "machines")...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and two rows:\n%s", r.stdout)
	}
	// A Windows SID widens the UID column.
	header := strings.Join(strings.Fields(lines[0]), " ")
	if !strings.HasPrefix(header, "MACHINE ID CLAIMED PID KERNEL PID UID PROCESS") || !strings.HasSuffix(header, "REGISTERED AT CONNECTED FOR") {
		t.Errorf("header %q", lines[0])
	}
	pid := os.Getpid()
	user := func(s string) bool { return s == strconv.Itoa(os.Getuid()) }
	if runtime.GOOS == "windows" {
		user = func(s string) bool { return strings.HasPrefix(s, "S-1-") } // the user's SID
	}
	for i, id := range []string{"machine-a", "machine-b"} { // sorted
		f := strings.Fields(lines[i+1])
		if len(f) != 8 || f[0] != id || f[1] != strconv.Itoa(pid) || f[2] != strconv.Itoa(pid) || !user(f[3]) {
			t.Errorf("row %q", lines[i+1])
		}
		// Columns line up: every row's second column starts under the header's.
		if strings.Index(lines[i+1], f[1]) != strings.Index(lines[0], "CLAIMED") {
			t.Errorf("row %q is not aligned with %q", lines[i+1], lines[0])
		}
	}

	r = runCmd(t, "", args(flag, "machines", "--json")...)
	var ms []statebus.MachineInfo
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil || r.code != 0 {
		t.Fatalf("--json: exit %d, %v:\n%s", r.code, err, r.stdout)
	}
	if len(ms) != 2 || ms[0].MachineID != "machine-a" || ms[0].PeerPID != pid || ms[0].ProcessID != int64(pid) || !ms[0].Subscribed {
		t.Errorf("--json: %+v", ms)
	}
	if !strings.Contains(r.stdout, `"MachineId": "machine-a"`) {
		t.Errorf("--json does not use the wire names:\n%s", r.stdout)
	}
}

func TestMachinesNoService(t *testing.T) {
	r := runCmd(t, "", "machines", "--pipe-name", noBus())
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	wantLines(t, r.stderr, "cannot connect to "+noBus()+": is statebusd running?")
}
