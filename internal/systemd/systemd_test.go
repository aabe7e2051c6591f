package systemd

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statebus/statebus/internal/bustest"
)

// When SYSTEMD_TEST_CHILD is set the test binary is a socket-activated
// service: it takes the passed socket, accepts one connection and says
// which socket it got.
func TestMain(m *testing.M) {
	if os.Getenv("SYSTEMD_TEST_CHILD") == "1" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid())) // as systemd sets it
		lns, err := Listeners(os.Getenv, os.Getpid())
		if err != nil || len(lns) != 1 {
			os.Stdout.WriteString("error: " + strconv.Itoa(len(lns)) + " listeners, " + errString(err) + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("listening " + lns[0].Addr().String() + "\n")
		c, err := lns[0].Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Write([]byte("hello from the activated child\n"))
		c.Close()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, bustest.IgnoreWinio)
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestNotify(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("NOTIFY_SOCKET is Linux's")
	}
	path := filepath.Join(shortDir(t), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	n := NewNotifier(env(map[string]string{"NOTIFY_SOCKET": path}))
	for _, state := range []string{"READY=1\nSTATUS=serving", "WATCHDOG=1", Reloading(), "STOPPING=1"} {
		if err := n.Notify(state); err != nil {
			t.Fatal(err)
		}
		sock.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1024)
		k, err := sock.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:k]) != state {
			t.Fatalf("received %q, sent %q", buf[:k], state)
		}
	}
	if !strings.HasPrefix(Reloading(), "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("Reloading() = %q", Reloading())
	}

	// Abstract socket names work too.
	abs, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@statebus-test-" + strconv.Itoa(os.Getpid()), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer abs.Close()
	if err := NewNotifier(env(map[string]string{"NOTIFY_SOCKET": abs.LocalAddr().String()})).Notify("READY=1"); err != nil {
		t.Fatalf("abstract: %v", err)
	}

	// Outside systemd: nothing, and no error.
	if n := NewNotifier(env(nil)); n != nil || n.Notify("READY=1") != nil {
		t.Fatal("notifier without NOTIFY_SOCKET")
	}
	if err := NewNotifier(env(map[string]string{"NOTIFY_SOCKET": "vsock:2:1"})).Notify("READY=1"); err != ErrUnsupportedSocket {
		t.Fatalf("vsock: %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15 * time.Second},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, 0},
		{map[string]string{"WATCHDOG_USEC": "x"}, 0},
		{map[string]string{"WATCHDOG_USEC": "0"}, 0},
	} {
		if got := WatchdogInterval(env(tc.env), 42); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.env, got, tc.want)
		}
	}
}

// TestListeners passes a real listening socket to a child process as fd 3,
// as systemd does, and connects to it.
func TestListeners(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("socket activation is systemd's")
	}
	path := filepath.Join(shortDir(t), "bus.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SYSTEMD_TEST_CHILD=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=statebusd.socket")
	cmd.ExtraFiles = []*os.File{f}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "listening "+path+"\n" {
		t.Fatalf("child: %q", line)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if string(got) != "hello from the activated child\n" {
		t.Fatalf("from the child: %q", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}

	// Descriptors meant for another process are not ours.
	if lns, err := Listeners(env(map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1"}), os.Getpid()); lns != nil || err != nil {
		t.Fatalf("LISTEN_PID of another process: %v %v", lns, err)
	}
}
