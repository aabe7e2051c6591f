package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/logging"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/testdir"
	"github.com/statebus/statebus/internal/wine"
	"github.com/statebus/statebus/protocol"
)

// When STATEBUSD_TEST_MAIN is set the test binary is statebusd: fault tests
// run it as a real child process.
// STATEBUSD_TEST_LISTEN_PID=1 makes it a socket-activated statebusd: it
// sets LISTEN_PID to its own pid, as systemd does between fork and exec.
// STATEBUSD_TEST_JOURNAL=1 sets JOURNAL_STREAM to its stderr's device and
// inode, as systemd does when it connects stderr to the journal.
func TestMain(m *testing.M) {
	if os.Getenv("STATEBUSD_TEST_MAIN") == "1" {
		if os.Getenv("STATEBUSD_TEST_LISTEN_PID") == "1" {
			os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		}
		if os.Getenv("STATEBUSD_TEST_JOURNAL") == "1" {
			// As systemd does for a unit's stderr connected to the journal.
			if dev, ino, ok := logging.StreamID(os.Stderr); ok {
				os.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", dev, ino))
			}
		}
		main()
		return
	}
	if os.Getenv("STATEBUSD_TEST_CLIENT") != "" {
		runTestClient()
		return
	}
	if os.Getenv("STATEBUSD_TEST_DURABLE_RECEIVER") != "" {
		runDurableReceiver()
		return
	}
	// Children start from a known environment: no monitoring port unless
	// a test asks for one (two tests must not race for 9555), and none of
	// systemd's variables the test runner may have been started with.
	os.Setenv("STATEBUS_HTTP", "off")
	for _, k := range []string{"JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
		"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "STATEBUS_CONFIG", "STATEBUS_LOG_LEVEL", "STATEBUS_LOG_FORMAT"} {
		os.Unsetenv(k)
	}
	goleak.VerifyTestMain(m, bustest.IgnoreWinio)
}

func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "sbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testdir.RemoveAll(dir) })
	return dir
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRunInProcess(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "appsettings.json")
	os.WriteFile(cfg, []byte(`{
	  "Logging": {"LogLevel": {"Default": "Information", "XStateNet.InterProcess": "Debug"}},
	  "MessageBus": {"PipeName": "FromFile", "MaxConnections": 7, "HealthCheckIntervalSeconds": 30}
	}`), 0o644)
	t.Setenv("TMPDIR", dir)
	sigs := make(chan os.Signal, 1)
	started := make(chan *server.Server, 1)
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"--config", cfg, "--max-connections", "9"},
			env(map[string]string{"STATEBUS_PIPE_NAME": "FromEnv", "STATEBUS_MAX_CONNECTIONS": "8", "STATEBUS_HTTP": "off"}),
			os.Stdout, &stderr, sigs, started)
	}()
	var srv *server.Server
	select {
	case srv = <-started:
	case c := <-code:
		t.Fatalf("exited %d: %s", c, stderr.String())
	}
	// The environment overrides the file; the flag overrides both.
	if want := protocol.PipePath("FromEnv"); srv.Addr() != want {
		t.Fatalf("socket %s, want %s", srv.Addr(), want)
	}
	for i := range 9 {
		c, err := statebus.Dial(context.Background(), fmt.Sprint("m", i), statebus.WithPipeName(srv.Addr()))
		if err != nil {
			t.Fatalf("connection %d of --max-connections 9: %v", i+1, err)
		}
		defer c.Close()
	}
	if _, err := statebus.Dial(context.Background(), "tenth", statebus.WithPipeName(srv.Addr())); err == nil ||
		!strings.Contains(err.Error(), "Too many connections (limit 9)") {
		t.Fatalf("tenth connection: %v", err)
	}
	sigs <- syscall.SIGTERM
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d: %s", c, stderr.String())
	}
	if !busaddr.Gone(srv.Addr()) {
		t.Fatal("socket left behind")
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--max-connections", "x"}, nil, `flag --max-connections: invalid value "x"`},
		{nil, map[string]string{"MessageBus__MaxConnections": "0"}, "MaxConnections must be at least 1"},
		{[]string{"--log-level", "loud"}, nil, `unknown log level "loud"`},
		{[]string{"--config", "/nonexistent/appsettings.json"}, nil, "cannot read config"},
	} {
		var stderr bytes.Buffer
		code := run(tc.args, env(tc.env), os.Stdout, &stderr, nil, nil)
		if code == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %v: code %d, stderr %q, want %q", tc.args, tc.env, code, stderr.String(), tc.want)
		}
	}
}

// startProcess runs statebusd as a real child process on path.
func startProcess(t *testing.T, path string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := statebusdCmd("--pipe-name", path)
	var out bytes.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := busaddr.Dial(context.Background(), path); err == nil {
			c.Close()
			return cmd, &out
		}
		if time.Now().After(deadline) {
			t.Fatalf("statebusd did not start: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcessLifecycle(t *testing.T) {
	path := busPath(t)
	cmd, _ := startProcess(t, path)

	// A second instance refuses a live socket, non-zero. (Wine 8 lets a
	// second process create the pipe name another serves: there it would
	// serve too.)
	if wine.Running() {
		t.Log("a second instance on the same pipe: not checked under Wine, which does not refuse it (FILE_FLAG_FIRST_PIPE_INSTANCE)")
	} else if msg, err := statebusdCmd("--pipe-name", path).CombinedOutput(); err == nil || !strings.Contains(string(msg), alreadyServing(path)) {
		t.Fatalf("second instance: %v %s", err, msg)
	}

	// SIGKILL leaves a stale socket (on Unix; a named pipe goes with its
	// last handle); the next start replaces it.
	cmd.Process.Kill()
	cmd.Wait()
	if runtime.GOOS != "windows" {
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("expected a stale socket after SIGKILL: %v", err)
		}
	}
	cmd, out := startProcess(t, path)
	c, err := statebus.Dial(context.Background(), "after-restart", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	// SIGTERM: exit 0 within 5 s, socket removed.
	start := time.Now()
	stopGracefully(t, cmd)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to stop", d)
	}
	if !busaddr.Gone(path) {
		t.Fatal("socket left behind after SIGTERM")
	}
}

// TestDefaultPathHeldByAnotherUser: another user's socket on the default
// path (where .NET clients look) stops statebusd with an ERROR log line
// that says clients there are not talking to it, and a hint on stderr.
func TestDefaultPathHeldByAnotherUser(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix only: a socket file that belongs to another uid")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a socket file to another uid")
	}
	t.Setenv("TMPDIR", shortDir(t)) // the default path, moved into a temp dir
	path := protocol.PipePath(protocol.DefaultPipeName)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run(nil, env(nil), os.Stdout, &stderr, nil, nil)
	out := stderr.String()
	if code != 1 || !strings.Contains(out, "level=ERROR") ||
		!strings.Contains(out, "clients that connect to it are not talking to this statebusd") ||
		!strings.Contains(out, "belongs to uid 65534, not to statebusd's uid 0") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
