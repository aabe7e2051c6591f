package orchestrator_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports: the orchestrator is a library for programs that host
// machines; it builds on the client and the runtime, never on the
// service or the command line (nor their dependencies).
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("short: runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/statebus/statebus/orchestrator").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/internal/server", "/internal/httpapi", "/internal/config", "/cmd/", "prometheus", "hdrhistogram", "progressbar"} {
			if strings.Contains(dep, banned) {
				t.Errorf("package orchestrator depends on %s", dep)
			}
		}
	}
}
