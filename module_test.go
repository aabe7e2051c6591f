package statebus_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// readmeExample returns the README's client example: the first ```go
// block after "## The Go client".
func readmeExample(t *testing.T) string {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## The Go client\n")
	if !ok {
		t.Fatal(`README.md has no "## The Go client" section`)
	}
	_, block, ok := strings.Cut(section, "\n```go\n")
	if !ok {
		t.Fatal("README.md's client section has no ```go block")
	}
	code, _, ok := strings.Cut(block, "\n```\n")
	if !ok {
		t.Fatal("README.md's client example does not end")
	}
	if !strings.HasPrefix(code, "package main\n") {
		t.Fatal("README.md's client example must be a whole program (package main), so that it can be copied and built")
	}
	return code + "\n"
}

// TestModuleImport builds the README's client example in a module of its
// own that requires this one (replaced by the checkout), as another
// module would, and checks that the client does not drag in the
// service's dependencies. It works offline: the module cache has what the
// checkout builds with.
func TestModuleImport(t *testing.T) {
	if testing.Short() {
		t.Skip("short: builds a module")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	checkout, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	dir := bustest.TempDir(t)
	files := map[string]string{
		"go.mod": "module example.com/busclient\n\ngo 1.26\n\n" +
			"require github.com/statebus/statebus v0.0.0\n\n" +
			"replace github.com/statebus/statebus => " + checkout + "\n",
		"go.sum":  string(sum), // the checkout's: the hashes of everything it may need
		"main.go": readmeExample(t),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(goTool, args...)
		cmd.Dir = dir
		// GOPROXY, GOMODCACHE and GOCACHE stay as they are: offline, the
		// module cache has everything.
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s in a module that imports the client: %v\n%s\nmain.go:\n%s", strings.Join(args, " "), err, &stderr, files["main.go"])
		}
		return string(out)
	}
	goCmd("build", "-o", filepath.Join(dir, "busclient"), ".")
	deps := goCmd("list", "-deps", ".")
	for _, heavy := range []string{"prometheus", "hdrhistogram", "HdrHistogram", "progressbar"} {
		if strings.Contains(deps, heavy) {
			t.Errorf("a program that imports the client depends on %s:\n%s", heavy, deps)
		}
	}
}
