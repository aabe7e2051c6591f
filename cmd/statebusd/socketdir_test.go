//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// TestSocketDirCreated: a socket in a directory that does not exist yet,
// under one that does, gets its directory (0755, statebusd's), instead of
// "bind: no such file or directory".
func TestSocketDirCreated(t *testing.T) {
	dir := filepath.Join(shortDir(t), "run")
	path := filepath.Join(dir, "bus.sock")
	stderr, sigs, code := runInProcess(t, []string{"--pipe-name", path, "--http", "off"}, env(nil))
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("socket directory: %v %v", fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() {
		t.Errorf("socket directory owned by uid %d, want %d", st.Uid, os.Geteuid())
	}
	if !strings.Contains(stderr.String(), `msg="created the socket's directory" category=statebus.daemon dir=`+dir+" mode=0755") {
		t.Errorf("no log line for the new directory:\n%s", stderr.String())
	}
	sigs <- syscall.SIGTERM
	if c := <-code; c != 0 {
		t.Fatalf("exit %d:\n%s", c, stderr.String())
	}
}

// TestSocketDirMissing: when the directory is not statebusd's to create,
// the error names it and says what to do. As root the cases that need an
// unprivileged user run the test binary as uid 65534.
func TestSocketDirMissing(t *testing.T) {
	base := shortDir(t)
	os.Chmod(base, 0o755) // uid 65534 runs a copy of the test binary from here
	ro := filepath.Join(base, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	cannot := func(dir, why string) string {
		return "statebusd: the socket's directory " + dir + " does not exist and statebusd cannot create it (mkdir " +
			dir + ": " + why + "): create it for statebusd's user (sudo install -d -m 0755 -o "
	}
	cases := []struct {
		name, path, want string
		unprivileged     bool
	}{
		{"no parent", filepath.Join(base, "a", "b", "bus.sock"),
			"statebusd: the socket's directory " + filepath.Join(base, "a", "b") + " does not exist, nor does its parent " +
				filepath.Join(base, "a") + ": create it (mkdir -p " + filepath.Join(base, "a", "b") +
				") or choose a PipeName in an existing directory\n", false},
		{"parent not writable", filepath.Join(ro, "run", "bus.sock"), cannot(filepath.Join(ro, "run"), "permission denied"), true},
	}
	if _, err := os.Stat(runDir); os.IsNotExist(err) && isDir(filepath.Dir(runDir)) {
		// The installed configuration's socket, without systemd.
		cases = append(cases, struct {
			name, path, want string
			unprivileged     bool
		}{"installed config", runDir + "/statebus.sock", cannot(runDir, "permission denied"), true})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out string
			var c int
			if tc.unprivileged && os.Geteuid() == 0 {
				out, c = runAsNobody(t, base, "--pipe-name", tc.path, "--http", "off")
			} else {
				var stderr bustest.Buffer
				c = run([]string{"--pipe-name", tc.path, "--http", "off"}, env(nil), os.Stdout, &stderr, nil, nil)
				out = stderr.String()
			}
			if c != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want 1 and %q in\n%s", c, tc.want, out)
			}
			if strings.Contains(out, "bind: no such file or directory") {
				t.Errorf("bind's error, not ours:\n%s", out)
			}
		})
	}
}

// runAsNobody runs a copy of the test binary in dir as statebusd with
// args, as uid 65534, and returns its stderr and exit code.
func runAsNobody(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copyExe := filepath.Join(dir, "statebusd.test")
	if _, err := os.Stat(copyExe); err != nil {
		if err := os.WriteFile(copyExe, bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(copyExe, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STATEBUSD_TEST_MAIN=1", "USER=nobody")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: bustest.Nobody, Gid: bustest.Nobody}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return stderr.String(), cmd.ProcessState.ExitCode()
}
