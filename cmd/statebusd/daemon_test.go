package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
)

// daemonProc is statebusd running as a real child process.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *bustest.Buffer
	exited chan struct{} // closed once Wait returned
}

// startDaemon runs the test binary as statebusd with args, extra
// environment and extra files (fd 3 on), and waits until its log says it
// listens.
func startDaemon(t *testing.T, args, env []string, files ...*os.File) *daemonProc {
	t.Helper()
	cmd := statebusdCmd(args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	d := &daemonProc{cmd: cmd, stderr: &bustest.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-d.exited })
	d.waitLog(t, "statebusd listening")
	return d
}

// records parses the JSON log lines written so far, each possibly
// prefixed with a journal priority "<N>", which is kept as "priority".
func (d *daemonProc) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(d.stderr.String()))
	for sc.Scan() {
		line := sc.Text()
		prio := ""
		if strings.HasPrefix(line, "<") && len(line) > 3 && line[2] == '>' {
			prio, line = line[1:2], line[3:]
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if prio != "" {
			m["priority"] = prio
		}
		out = append(out, m)
	}
	return out
}

// find returns the first record with message msg, or nil.
func (d *daemonProc) find(t *testing.T, msg string) map[string]any {
	for _, r := range d.records(t) {
		if r["msg"] == msg {
			return r
		}
	}
	return nil
}

// waitLog polls until a record with message msg is logged and returns it.
func (d *daemonProc) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	var r map[string]any
	bustest.Eventually(t, 10*time.Second, func() bool {
		if !strings.Contains(d.stderr.String(), msg) {
			return false
		}
		r = d.find(t, msg)
		return r != nil
	}, "no %q in the log:\n%s", msg, d.stderr)
	return r
}

// stop asks statebusd to stop as SIGTERM does (stopGracefully) and wants
// exit status 0.
func (d *daemonProc) stop(t *testing.T) {
	t.Helper()
	stopGracefully(t, d.cmd)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("statebusd did not stop:\n%s", d.stderr)
	}
	if !d.cmd.ProcessState.Success() {
		t.Fatalf("exit %v:\n%s", d.cmd.ProcessState, d.stderr)
	}
}
