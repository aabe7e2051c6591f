package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSelftest(t *testing.T) {
	// --pipe-name is refused: the self-test checks a bus of its own.
	r := runCmd(t, "", "selftest", "--messages", "2000", "--pipe-name", "/tmp/statebus-no-such-dir/bus.sock")
	if r.code != 2 || !strings.Contains(r.stderr, "statebus selftest: --pipe-name does not apply: selftest checks a bus it starts itself") {
		t.Errorf("--pipe-name: exit %d: %s", r.code, r.stderr)
	}
	r = runCmd(t, "", "selftest", "--messages", "2000")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout,
		"✓ ping-pong: received 5/5 PONGs",
		"✓ broadcast (5 clients): 20/20 messages delivered\n",
		"✓ stress (2,000 events): 2,000/2,000 delivered in order",
		`✓ error text: target not connected: "Target machine not connected: `,
		"✓ 12/12 checks passed\n")

	r = runCmd(t, "", "selftest", "--messages", "100", "--json")
	var doc struct {
		OK            bool
		Passed, Total int
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 || !doc.OK || doc.Passed != doc.Total {
		t.Errorf("--json: exit %d, %v:\n%s", r.code, err, r.stdout)
	}
}
