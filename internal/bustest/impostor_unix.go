//go:build linux || darwin || freebsd

package bustest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// StartImpostor runs the test binary as uid 65534, serving a bus on path,
// until the test ends.
func StartImpostor(t *testing.T, dir, path string) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is root's alone.
	copyExe := filepath.Join(dir, "impostor.test")
	if err := os.WriteFile(copyExe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyExe, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), ImpostorEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	Eventually(t, 20*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("the impostor exited: %v\n%s", cmd.ProcessState, stderr.String())
		default:
		}
		nc, err := net.Dial("unix", path)
		if err == nil {
			nc.Close()
		}
		return err == nil
	}, "the impostor does not listen on %s", path)
}
