//go:build linux

package server_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
)

// startParking starts a service whose janitor ticks every 25 ms
// (RequestTimeout/4), so that idle connections park within 50 ms.
func startParking(t *testing.T, edit func(*server.Config)) *server.Server {
	t.Helper()
	return bustest.Start(t, func(c *server.Config) {
		c.RequestTimeout = 100 * time.Millisecond
		if edit != nil {
			edit(c)
		}
	})
}

func waitParked(t *testing.T, srv *server.Server, n int) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Stats().ParkedConnections == n },
		"%d connections parked, want %d", srv.Stats().ParkedConnections, n)
}

// sendIdle writes s to c and waits until the service has read it: its
// reader has woken up.
func sendIdle(t *testing.T, srv *server.Server, c *raw, s string) {
	t.Helper()
	before := srv.Stats().BytesIn
	if _, err := io.WriteString(c.C, s); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Stats().BytesIn >= before+uint64(len(s)) }, "%d bytes not read", len(s))
}

func registered(srv *server.Server, id string) bool {
	return slices.ContainsFunc(srv.Machines(), func(m router.Info) bool { return m.MachineID == id })
}

// An idle connection parks (its reader goroutine returns); it still
// receives what is sent to it while parked, and what it sends after that
// is executed (its reader resumes).
func TestParkIdleConnection(t *testing.T) {
	srv := startParking(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	waitParked(t, srv, 2)

	// To a parked connection: its writer starts; it stays parked.
	ev := `{"SourceMachineId":"b","TargetMachineId":"a","EventName":"E1"}`
	b.Send(`{"Type":2,"Payload":` + ev + `}`)
	a.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	b.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"a"},"Error":null}`)
	waitParked(t, srv, 2)

	// From a parked connection: it wakes and executes, again and again.
	for i := range 3 {
		ev = fmt.Sprintf(`{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E%d"}`, i)
		a.Send(`{"Type":2,"Payload":` + ev + `}`)
		b.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
		a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
		waitParked(t, srv, 2)
	}
}

// A client that sends part of a line and goes idle is parked with it;
// the rest of the line completes it after the wakeup. A line over the
// limit is still skipped to its end and refused when it is split by a
// park.
func TestParkPartialLine(t *testing.T) {
	srv := startParking(t, func(c *server.Config) { c.MaxMessageBytes = 1024 })
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	waitParked(t, srv, 2)

	ev := `{"SourceMachineId":"a","TargetMachineId":"b","EventName":"Half"}`
	line := `{"Type":2,"Payload":` + ev + `}` + "\n"
	sendIdle(t, srv, a, line[:1])
	waitParked(t, srv, 2) // parked again, holding one byte
	if _, err := io.WriteString(a.C, line[1:]); err != nil {
		t.Fatal(err)
	}
	b.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)

	waitParked(t, srv, 2)
	sendIdle(t, srv, a, `{"Type":2,"Payload":"`+strings.Repeat("x", 3000))
	waitParked(t, srv, 2) // parked in the middle of skipping the line
	if _, err := io.WriteString(a.C, strings.Repeat("y", 100)+`"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	a.Expect(`{"Success":false,"Data":null,"Error":"Message exceeds 1024 bytes"}`)
	a.Send(`{"Type":2,"Payload":` + ev + `}`)
	b.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
}

// A peer that closes while parked wakes its reader, which reads the end:
// the id is free again.
func TestParkPeerCloses(t *testing.T) {
	srv := startParking(t, nil)
	a := dialRaw(t, srv).Connect("a")
	waitParked(t, srv, 1)
	a.C.Close()
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 0 }, "the connection did not end")
	if registered(srv, "a") {
		t.Fatal("a is still registered")
	}
	dialRaw(t, srv).Connect("a")
}

// Shutdown ends parked connections: their readers are resumed, see the
// stop and clean up; their ids are freed and Shutdown returns in time
// (goleak checks that the Parker's goroutine is gone).
func TestParkShutdown(t *testing.T) {
	srv := startParking(t, nil)
	var conns []*raw
	for i := range 20 {
		conns = append(conns, dialRaw(t, srv).Connect(fmt.Sprint("m", i)))
	}
	waitParked(t, srv, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if h := srv.Health(); h.ConnectionCount != 0 || h.RegisteredMachines != 0 {
		t.Fatalf("after Shutdown: %+v", h)
	}
	for _, c := range conns {
		c.C.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.R.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read after Shutdown: %d, %v; want EOF", n, err)
		}
	}
}

// A parked connection that does not read what it is sent is closed as a
// slow consumer (abort: its writer was blocked for WriteTimeout) while its
// reader is parked: the reader is resumed, ends, and the id is freed.
func TestParkAbortSlowConsumer(t *testing.T) {
	srv := startParking(t, func(c *server.Config) {
		c.WriteTimeout = 300 * time.Millisecond
		c.SlowConsumerTimeout = 200 * time.Millisecond
	})
	dialRaw(t, srv).Connect("sink") // never reads again
	b := dialRaw(t, srv).Connect("b")
	waitParked(t, srv, 2)
	b.C.SetReadDeadline(time.Now().Add(30 * time.Second))
	go io.Copy(io.Discard, b.C) // b reads its answers
	payload := strings.Repeat("p", 900)
	ev := `{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"b","TargetMachineId":"sink","EventName":"E","Payload":"` + payload + `"}}` + "\n"
	batch := strings.Repeat(ev, 100)
	bustest.Eventually(t, 20*time.Second, func() bool {
		if srv.Stats().SlowConsumersClosed > 0 {
			return true
		}
		io.WriteString(b.C, batch)
		return false
	}, "the sink was not closed as a slow consumer")
	bustest.Eventually(t, 10*time.Second, func() bool { return !registered(srv, "sink") }, "sink is still registered")
	bustest.Eventually(t, 10*time.Second, func() bool { return srv.Health().ConnectionCount == 1 }, "the sink's connection did not end")
}

// Many connections park and wake at the same time (run it with -race):
// every event is delivered and acknowledged, every time.
func TestParkChurn(t *testing.T) {
	srv := startParking(t, nil)
	const n = 30
	conns := make([]*raw, n)
	for i := range conns {
		conns[i] = dialRaw(t, srv).Connect(fmt.Sprint("c", i))
	}
	for round := range 5 {
		waitParked(t, srv, n)
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprint("c", i)
				for k := range 5 {
					ev := fmt.Sprintf(`{"SourceMachineId":"%s","TargetMachineId":"%s","EventName":"R%d_%d"}`, id, id, round, k)
					c.Send(`{"Type":2,"Payload":` + ev + `}`)
					got := []string{c.Read(), c.Read()}
					slices.Sort(got)
					want := []string{
						`{"Success":true,"Data":` + ev + `,"Error":null}`,
						`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"` + id + `"},"Error":null}`,
					}
					slices.Sort(want)
					if !slices.Equal(got, want) {
						t.Errorf("got %q, want %q", got, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}
