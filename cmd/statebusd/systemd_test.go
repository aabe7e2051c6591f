//go:build unix

package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus"
)

// notifySocket is a real NOTIFY_SOCKET: a datagram socket whose messages
// arrive on msgs.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(shortDir(t), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { sock.Close(); <-done })
	return path, msgs
}

// next returns the next message that is not a watchdog ping, counting the
// pings skipped.
func next(t *testing.T, msgs <-chan string, pings *int) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m == "WATCHDOG=1" {
				*pings++
				continue
			}
			return m
		case <-timeout:
			t.Fatal("no notification within 10s")
		}
	}
}

// TestSystemdNotify runs statebusd as a process under a real NOTIFY_SOCKET
// with the watchdog on: READY=1 once the socket accepts, WATCHDOG=1 pings,
// RELOADING=1 and READY=1 around a SIGHUP, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	notify, msgs := notifySocket(t)
	path := filepath.Join(shortDir(t), "bus.sock")
	d := startDaemon(t, []string{"--pipe-name", path, "--log-format", "json"},
		[]string{"NOTIFY_SOCKET=" + notify, "WATCHDOG_USEC=40000"}) // ping every 20 ms
	pings := 0
	if m := next(t, msgs, &pings); m != "READY=1\nSTATUS=serving "+path {
		t.Fatalf("first notification %q, want READY=1 with STATUS", m)
	}
	// READY came after the socket accepts.
	c, err := statebus.Dial(context.Background(), "after-ready", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for pings < 3 {
		select {
		case m := <-msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("unexpected %q while serving", m)
			}
			pings++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d watchdog pings in 10 s", pings)
		}
	}

	d.cmd.Process.Signal(syscall.SIGHUP)
	if m := next(t, msgs, &pings); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after SIGHUP: %q", m)
	}
	if m := next(t, msgs, &pings); m != "READY=1" {
		t.Fatalf("after reload: %q", m)
	}
	if err := c.SendEvent(context.Background(), "after-ready", "SELF", nil); err != nil {
		t.Fatalf("connection after SIGHUP: %v", err)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	if m := next(t, msgs, &pings); m != "STOPPING=1" {
		t.Fatalf("after SIGTERM: %q", m)
	}
	d.stop(t)
	// No ping after STOPPING=1: the watchdog stops first.
	for {
		select {
		case m := <-msgs:
			t.Fatalf("%q after STOPPING=1", m)
		default:
			return
		}
	}
}

// TestSocketActivation hands statebusd a listening socket as fd 3 with
// LISTEN_FDS=1 and LISTEN_PID set to the child's pid, as systemd does. The
// socket outlives the process: after a stop it is still on disk, a client
// that connects while no statebusd runs waits in the backlog, and the
// next activated statebusd serves it.
func TestSocketActivation(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "activated.sock")
	configured := filepath.Join(dir, "configured.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	activate := func() *daemonProc {
		return startDaemon(t, []string{"--pipe-name", configured, "--log-format", "json"},
			[]string{"STATEBUSD_TEST_LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=statebusd.socket"}, f)
	}

	d := activate()
	if r := d.find(t, "statebusd listening"); r["socket"] != sock {
		t.Fatalf("listening on %v, want the passed socket %s", r["socket"], sock)
	}
	if r := d.find(t, "socket activation: serving the socket systemd passed instead of the configured one"); r == nil || r["configured"] != configured {
		t.Fatalf("no socket activation log record:\n%s", d.stderr)
	}
	if _, err := os.Lstat(configured); !os.IsNotExist(err) {
		t.Fatalf("statebusd created its own socket too: %v", err)
	}
	ctx := context.Background()
	a, err := statebus.Dial(ctx, "a", statebus.WithPipeName(sock))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := statebus.Dial(ctx, "b", statebus.WithPipeName(sock))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.SendEvent(ctx, "b", "PING", nil); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	d.stop(t)
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("the passed socket was removed on stop: %v", err)
	}

	// Nothing runs now; a client connecting waits in the socket's backlog.
	early := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		c, err := statebus.Dial(ctx, "early", statebus.WithPipeName(sock), statebus.WithDialTimeout(20*time.Second))
		if err == nil {
			err = c.SendEvent(ctx, "early", "SELF", nil)
			c.Close()
		}
		early <- err
	}()
	activate()
	if err := <-early; err != nil {
		t.Fatalf("client that connected while statebusd was stopped: %v", err)
	}
}
