package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/config"
	"github.com/statebus/statebus/internal/server"
)

// runInProcess starts run with args and getenv and returns its stderr and
// exit code channel once it serves, or fails with what it logged.
func runInProcess(t *testing.T, args []string, getenv func(string) string) (*bustest.Buffer, chan os.Signal, chan int) {
	t.Helper()
	sigs := make(chan os.Signal, 1)
	started := make(chan *server.Server, 1)
	stderr := &bustest.Buffer{}
	code := make(chan int, 1)
	go func() { code <- run(args, getenv, os.Stdout, stderr, sigs, started) }()
	select {
	case <-started:
	case c := <-code:
		t.Fatalf("exited %d:\n%s", c, stderr.String())
	}
	return stderr, sigs, code
}

// TestDefaultMonitorAddrTaken: with no Http configured and 127.0.0.1:9555
// held by someone else (here a listener of the test's own, or whatever
// already holds it on this host), statebusd warns and serves the bus.
func TestDefaultMonitorAddrTaken(t *testing.T) {
	if ln, err := net.Listen("tcp", config.DefaultHTTPAddr); err == nil {
		defer ln.Close()
	} // else: something on this host holds it already, which is the point.
	path := busPath(t)
	stderr, sigs, code := runInProcess(t, []string{"--pipe-name", path}, env(nil))
	out := stderr.String()
	if !strings.Contains(out, `level=WARN msg="monitoring endpoint not started: its default address is taken; the bus serves without it" category=statebus.daemon addr=`+config.DefaultHTTPAddr) {
		t.Errorf("no warning about the taken default address:\n%s", out)
	}
	sigs <- syscall.SIGTERM
	if c := <-code; c != 0 {
		t.Fatalf("exit %d:\n%s", c, stderr.String())
	}
}

// TestConfiguredMonitorAddrTaken: an address the operator chose still
// stops statebusd, exit 1, with an ERROR log line after "statebusd
// listening" that says why the bus that listened is stopping.
func TestConfiguredMonitorAddrTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	path := busPath(t)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"--pipe-name", path, "--http", addr}, nil},
		{"environment", []string{"--pipe-name", path}, map[string]string{"STATEBUS_HTTP": addr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bustest.Buffer
			c := run(tc.args, env(tc.env), os.Stdout, &stderr, nil, nil)
			out := stderr.String()
			if c != 1 {
				t.Fatalf("exit %d, want 1:\n%s", c, out)
			}
			for _, want := range []string{
				`level=ERROR msg="stopping: the bus started but the configured monitoring endpoint cannot be served" category=statebus.daemon addr=` + addr,
				"statebusd: cannot serve the monitoring endpoint on " + addr,
			} {
				if !strings.Contains(out, want) {
					t.Errorf("no %q in\n%s", want, out)
				}
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("socket left behind: %v", err)
			}
		})
	}
}

// TestMisspelledKeyWarns: a config key that names no setting is logged
// with the setting it most resembles, and the bus starts.
func TestMisspelledKeyWarns(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "appsettings.json")
	os.WriteFile(cfg, []byte("\xef\xbb\xbf{\n  // .NET style\n  \"MessageBus\": {\"MaxConection\": \"5\", \"Http\": \"off\",},\n}\n"), 0o644)
	stderr, sigs, code := runInProcess(t, []string{"--config", cfg, "--pipe-name", busPath(t)}, env(nil))
	sigs <- syscall.SIGTERM
	<-code
	want := `level=WARN msg="unknown configuration key ignored" category=statebus.daemon key=MessageBus:MaxConection did_you_mean=MessageBus:MaxConnections`
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("no %q in\n%s", want, stderr.String())
	}
}
