package statebus_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/statebus/statebus"
)

// handshakeSteps are the points at which TestHandshakeHangups hangs up.
var handshakeSteps = []fakeStep{
	{OnAccept: true},
	{Type: 0}, {Type: 0, After: true}, // Register
	{Type: 3}, {Type: 3, After: true}, // Subscribe
	{Type: 103}, {Type: 103, After: true}, // JoinGroup (on reconnect)
	{Type: 105}, {Type: 105, After: true}, // Watch (on reconnect)
}

// handshakeRuns is how often each step is tried: the failures it catches
// are races. STATEBUS_HANDSHAKE_RUNS sets it.
func handshakeRuns() int {
	if n, _ := strconv.Atoi(os.Getenv("STATEBUS_HANDSHAKE_RUNS")); n > 0 {
		return n
	}
	if testing.Short() {
		return 5
	}
	return 40
}

// TestHandshakeHangups: a server that hangs up at any step of the
// handshake, of Dial or of a reconnection, never leaves the client dead:
// Dial either fails or returns a client that works, and a reconnecting
// client ends up connected, with its group and watch set up again. (A
// connection lost just after the last ack, before the session was made
// the client's, used to leave it claiming to be connected with nobody
// reconnecting.)
func TestHandshakeHangups(t *testing.T) {
	runs := handshakeRuns()
	for _, step := range handshakeSteps {
		t.Run(step.String(), func(t *testing.T) {
			for range runs {
				handshakeHangup(t, step)
			}
		})
	}
}

func handshakeHangup(t *testing.T, step fakeStep) {
	fb := newFakeBus(t)
	opts := []statebus.Option{
		statebus.WithPipeName(fb.path),
		statebus.WithReconnectBackoff(time.Millisecond, 5*time.Millisecond),
		statebus.WithDialTimeout(5 * time.Second),
	}
	// Dial: the first connection hangs up at step.
	fb.hangUp(1, step)
	c, err := statebus.Dial(context.Background(), "m", opts...)
	if err != nil {
		if !errors.Is(err, statebus.ErrNotConnected) {
			t.Fatalf("Dial %s: %v, want an error that matches ErrNotConnected", step, err)
		}
		// Reported; a second Dial, to a behaving server, works.
		if c, err = statebus.Dial(context.Background(), "m", opts...); err != nil {
			t.Fatal(err)
		}
	}
	defer c.Close()
	works(t, c, "after Dial "+step.String())

	if err := c.JoinGroup(ctx(t), "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch(ctx(t), statebus.Filter{EventName: "W"}, func(statebus.Event) {}); err != nil {
		t.Fatal(err)
	}
	// Reconnect: the service drops the connection; the next one hangs up
	// at step, the one after behaves.
	fb.hangUp(fb.accepted()+1, step)
	fb.dropAll()
	works(t, c, "after a reconnection that hung up "+step.String())
	last := fb.requests(fb.accepted())
	if !slices.Contains(last, "103:g") || !slices.Contains(last, "105") {
		t.Fatalf("the connection in use asked %v: the group or the watch was not set up again", last)
	}
}

// works waits until c is connected and a send on it succeeds.
func works(t *testing.T, c *statebus.Client, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d := time.Millisecond; ; d = min(2*d, 50*time.Millisecond) {
		short, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.SendEvent(short, "x", "E", nil)
		cancel()
		if err == nil && c.Connected() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client is dead %s: connected %v, send: %v", when, c.Connected(), err)
		}
		time.Sleep(d)
	}
}
