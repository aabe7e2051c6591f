package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/wine"
)

// stop is the connection's one stop path: once it ran, nothing the reader
// does (its handshake deadline, the deadline it clears after Register)
// can make it wait. Before, stop set a read deadline that a reader
// starting or registering just then overwrote, so Shutdown waited the
// whole HandshakeTimeout.
func TestStopBeforeReaderStarts(t *testing.T) {
	cfg := DefaultConfig()
	path, cleanup, err := busaddr.Temp()
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	cfg.SocketPath = path
	cfg.HandshakeTimeout = time.Hour
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(cfg.SocketPath, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := wine.SpendFirstInstance(cfg.SocketPath); err != nil {
		t.Fatal(err)
	}
	for _, register := range []bool{false, true} {
		// Accept while dialing: a named pipe has no backlog, a client
		// waits for the server's next Accept.
		accepted := make(chan net.Conn, 1)
		go func() {
			nc, err := ln.Accept()
			if err != nil {
				t.Error(err)
			}
			accepted <- nc
		}()
		client, err := busaddr.Dial(context.Background(), cfg.SocketPath)
		if err != nil {
			t.Fatal(err)
		}
		nc := <-accepted
		if nc == nil {
			t.FailNow()
		}
		if register {
			client.Write([]byte(`{"Type":3,"Payload":"m"}` + "\n"))
		}
		c := s.newConn(nc)
		c.stop() // Shutdown got there first
		done := make(chan error, 1)
		go func() { done <- c.readLoop() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("register=%v: the reader did not return after stop", register)
		}
		c.q.Close()
		s.routes.Drop(c, c.ids)
		nc.Close()
		client.Close()
	}
}
