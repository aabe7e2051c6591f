package server_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

func TestSocketFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix only: a socket file's mode and its removal; a named pipe has neither (TestPipeSecurity checks its access list)")
	}
	srv := bustest.Start(t, nil)
	fi, err := os.Stat(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want socket 0660", fi.Mode())
	}
	// A live socket is not taken over.
	_, err = server.Listen(srv.Addr(), 0o660)
	if err == nil || err.Error() != "another statebusd is already serving "+srv.Addr() {
		t.Fatalf("second listener: %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(srv.Addr()); !os.IsNotExist(err) {
		t.Fatalf("socket not removed on shutdown: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix only: a killed statebusd leaves a socket file; a named pipe goes with its last handle")
	}
	path := bustest.SocketPath(t)
	// A socket file nobody listens on, as a killed statebusd leaves.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	srv := bustest.Start(t, func(c *server.Config) { c.SocketPath = path; c.SocketMode = 0o600 })
	c, err := busaddr.Dial(context.Background(), srv.Addr())
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	c.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}
	// A regular file is never removed.
	file := bustest.SocketPath(t)
	os.WriteFile(file, []byte("data"), 0o644)
	if _, err := server.Listen(file, 0o660); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("listening over a regular file: %v", err)
	}
}

func TestShutdownFlushesAndCloses(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	for range 100 {
		a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`)
	}
	// Wait until all 100 are queued or written (each acked).
	for range 100 {
		a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
	}
	start := time.Now()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	for range 100 {
		b.Expect(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"},"Error":null}`)
	}
	b.C.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.R.ReadByte(); err == nil {
		t.Fatal("connection still open after shutdown")
	}
	if srv.Health().IsHealthy {
		t.Fatal("healthy after shutdown")
	}
	if _, err := busaddr.Dial(context.Background(), srv.Addr()); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestShutdownWithStuckReader(t *testing.T) {
	srv := bustest.Start(t, func(c *server.Config) {
		c.ShutdownTimeout = 300 * time.Millisecond
		c.MaxQueueBytes = 1 << 20
		c.SlowConsumerTimeout = 100 * time.Millisecond
	})
	a := dialRaw(t, srv).Connect("a")
	dialRaw(t, srv).Connect("stuck") // never reads again
	payload := strings.Repeat("x", 60000)
	go func() {
		for range 200 {
			if _, err := a.C.Write([]byte(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"stuck","EventName":"E","Payload":"` + payload + `"}}` + "\n")); err != nil {
				return
			}
		}
	}()
	// The stuck target's queue fills: some events are refused as slow.
	for {
		line := a.Read()
		if strings.Contains(line, "Target machine is not keeping up: stuck") {
			break
		}
	}
	start := time.Now()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown with a stuck reader took %v", d)
	}
}

func TestHealthMonitorLogs(t *testing.T) {
	var buf bustest.Buffer
	srv := bustest.Start(t, func(c *server.Config) {
		c.HealthCheckInterval = 10 * time.Millisecond
		c.IdleWarning = 20 * time.Millisecond
		c.MaxConnections = 2
		c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	})
	dialRaw(t, srv).Connect("a")
	dialRaw(t, srv).Connect("b")
	bustest.Eventually(t, 5*time.Second, func() bool {
		s := buf.String()
		return strings.Contains(s, "msg=health") && strings.Contains(s, "connections=2") &&
			strings.Contains(s, `msg="no activity"`) &&
			strings.Contains(s, `msg="connections above 80% of MaxConnections"`)
	}, "health monitor logs: %s", buf.String())
}

func TestStats(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	c := dialRaw(t, srv).Connect("c")
	for range 5 {
		a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`)
		a.Read()
		b.Read()
	}
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"*","EventName":"B"}}`)
	a.Read()
	b.Read()
	c.Read()
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"nobody","EventName":"E"}}`)
	a.Read()
	a.Send(`garbage`)
	a.Read()
	c.C.Close() // its counters must survive it
	bustest.Eventually(t, 5*time.Second, func() bool { return srv.Health().ConnectionCount == 2 }, "c not gone")
	st := srv.Stats()
	if st.EventsReceived != 7 || st.EventsDelivered != 7 || st.Refused["target_not_connected"] != 1 ||
		st.Refused["invalid"] != 1 || st.Refused["slow_consumer"] != 0 || st.BytesIn == 0 || st.BytesOut == 0 {
		t.Fatalf("stats %+v", st)
	}
}
