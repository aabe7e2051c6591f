package statebus_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/wine"
)

// fakeBus is a raw listener (a Unix socket, a named pipe on Windows) that speaks just enough of the wire
// protocol to let a client connect, and misbehaves on purpose: it hangs up
// at a chosen step of one connection's handshake, or never answers a
// chosen request type.
type fakeBus struct {
	t    testing.TB
	ln   net.Listener
	path string
	wg   sync.WaitGroup

	mu      sync.Mutex
	n       int // connections accepted
	conns   map[net.Conn]bool
	bad     int              // the connection (1-based) that hangs up at step; 0: none
	step    fakeStep         // where
	mute    map[int]bool     // request types never answered
	seen    map[int][]string // per connection: what it asked, as "Type" or "Type:detail"
	watchID int
}

// fakeStep says where a connection hangs up: on accept, or when it reads
// a request of type Type, before or after answering it.
type fakeStep struct {
	OnAccept bool
	Type     int
	After    bool
}

func (s fakeStep) String() string {
	switch {
	case s.OnAccept:
		return "on accept"
	case s.After:
		return fmt.Sprintf("after the ack of type %d", s.Type)
	}
	return fmt.Sprintf("before the ack of type %d", s.Type)
}

func newFakeBus(t testing.TB) *fakeBus {
	path := bustest.SocketPath(t)
	ln, err := server.Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := wine.SpendFirstInstance(path); err != nil {
		t.Fatal(err)
	}
	fb := &fakeBus{t: t, ln: ln, path: path, conns: map[net.Conn]bool{}, mute: map[int]bool{}, seen: map[int][]string{}}
	fb.wg.Add(1)
	go fb.accept()
	t.Cleanup(func() {
		ln.Close()
		fb.dropAll()
		fb.wg.Wait()
	})
	return fb
}

// hangUp makes connection number conn (counting from 1) hang up at step.
func (fb *fakeBus) hangUp(conn int, step fakeStep) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.bad, fb.step = conn, step
}

// accepted returns how many connections were accepted.
func (fb *fakeBus) accepted() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.n
}

// open returns how many connections are open (not yet hung up by either
// side).
func (fb *fakeBus) open() int {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return len(fb.conns)
}

// requests returns what connection conn asked.
func (fb *fakeBus) requests(conn int) []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.seen[conn]...)
}

// dropAll hangs up every open connection.
func (fb *fakeBus) dropAll() {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	for c := range fb.conns {
		c.Close()
	}
}

func (fb *fakeBus) accept() {
	defer fb.wg.Done()
	for {
		c, err := fb.ln.Accept()
		if err != nil {
			return
		}
		fb.mu.Lock()
		fb.n++
		n := fb.n
		step := fakeStep{Type: -1}
		if n == fb.bad {
			step = fb.step
		}
		fb.conns[c] = true
		fb.mu.Unlock()
		if step.OnAccept {
			fb.forget(c)
			continue
		}
		fb.wg.Add(1)
		go fb.serve(c, n, step)
	}
}

func (fb *fakeBus) forget(c net.Conn) {
	c.Close()
	fb.mu.Lock()
	delete(fb.conns, c)
	fb.mu.Unlock()
}

func (fb *fakeBus) serve(c net.Conn, n int, step fakeStep) {
	defer fb.wg.Done()
	defer fb.forget(c)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req struct {
			Type    int
			ID      json.RawMessage `json:"Id"`
			Payload json.RawMessage
		}
		if json.Unmarshal(line, &req) != nil {
			fmt.Fprintf(c, `{"Success":false,"Data":null,"Error":"Invalid JSON format"}`+"\n")
			continue
		}
		seen := strconv.Itoa(req.Type)
		var g struct{ Group string }
		if req.Type == 103 || req.Type == 104 {
			json.Unmarshal(req.Payload, &g)
			seen += ":" + g.Group
		}
		fb.mu.Lock()
		fb.seen[n] = append(fb.seen[n], seen)
		mute := fb.mute[req.Type]
		fb.watchID++
		wid := fb.watchID
		fb.mu.Unlock()
		if req.Type == step.Type && !step.After {
			return
		}
		if req.ID != nil && !mute {
			data := "null"
			switch req.Type {
			case 0, 3:
				data = `{"MachineId":"x","RegisteredAt":"2026-01-01T00:00:00.0000000Z"}`
			case 2:
				data = `{"Delivered":true,"TargetMachineId":"x"}`
			case 105:
				data = fmt.Sprintf(`{"WatchId":%d}`, wid)
			}
			if _, err := fmt.Fprintf(c, `{"Success":true,"Data":%s,"Error":null,"Id":%s}`+"\n", data, req.ID); err != nil {
				return
			}
		}
		if req.Type == step.Type {
			return
		}
	}
}
