//go:build linux || darwin || freebsd

package statebus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestUntrustedServer: a bus served by another user (as an unprivileged
// user who bound /tmp/CoreFxPipe_... first would) is refused on connect
// and on reconnect, with an error that names the uid and the way to
// trust it; trusting it explicitly works.
func TestUntrustedServer(t *testing.T) {
	if os.Geteuid() != 0 {
		// Without root no other user can serve a socket here; check the
		// refusal of this user's own server when another uid is expected.
		srv := bustest.Start(t, nil)
		want := os.Geteuid() + 1
		_, err := statebus.Dial(ctx(t), "a", statebus.WithPipeName(srv.Addr()), statebus.WithServerUID(want))
		var ue *statebus.UntrustedServerError
		if !errors.As(err, &ue) || ue.UID != os.Geteuid() || !errors.Is(err, statebus.ErrUntrustedServer) {
			t.Fatalf("Dial expecting uid %d: %v", want, err)
		}
		t.Skip("not root: the impostor run as uid 65534 needs root (run the tests as root to check it)")
	}
	dir, err := os.MkdirTemp("", "sbimp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil { // like /tmp: anyone may bind a socket here
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bus.sock")

	// First the real service, run by root, and a client of it.
	srv := bustest.Start(t, func(c *server.Config) { c.SocketPath = path })
	var mu sync.Mutex
	var reported []error
	c := dial(t, srv, "victim", statebus.WithReconnectBackoff(time.Millisecond, 20*time.Millisecond),
		statebus.WithErrorHandler(func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() }))
	srv.Shutdown(context.Background())
	bustest.Eventually(t, 10*time.Second, func() bool { return c.Status() == statebus.Reconnecting }, "status %v", c.Status())

	// Then another user binds the socket.
	bustest.StartImpostor(t, dir, path)
	want := fmt.Sprintf("statebus: refusing server on %s: the socket is served by uid %d, expected 0; another user may be impersonating statebusd "+
		"(if uid %d runs your statebusd, trust it with WithServerUID(%d) or STATEBUS_SERVER_UID=%d)", path, nobody, nobody, nobody, nobody)
	check := func(what string, err error) {
		t.Helper()
		var ue *statebus.UntrustedServerError
		if !errors.As(err, &ue) || !errors.Is(err, statebus.ErrUntrustedServer) || ue.UID != nobody ||
			!reflect.DeepEqual(ue.Trusted, []int{0}) || ue.Error() != want {
			t.Fatalf("%s: %v\nwant %s", what, err, want)
		}
	}
	_, err = statebus.Dial(ctx(t), "other", statebus.WithPipeName(path))
	check("Dial", err)
	_, err = statebus.Health(ctx(t), statebus.WithPipeName(path))
	check("Health", err)

	// The reconnecting client refuses it, says so, and stays away.
	bustest.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(reported) > 0 }, "no refusal reported")
	mu.Lock()
	check("reconnecting", reported[0])
	mu.Unlock()
	if c.Status() != statebus.Reconnecting {
		t.Fatalf("status %v with an impostor on the socket", c.Status())
	}

	// Trusted on purpose, it is a working bus: the refusal was the check.
	t.Setenv("STATEBUS_SERVER_UID", fmt.Sprint(nobody))
	h, err := statebus.Health(ctx(t), statebus.WithPipeName(path))
	if err != nil || !h.IsHealthy {
		t.Fatalf("Health with STATEBUS_SERVER_UID=%d: %+v, %v", nobody, h, err)
	}
	t.Setenv("STATEBUS_SERVER_UID", "")
	other, err := statebus.Dial(ctx(t), "other", statebus.WithPipeName(path), statebus.WithServerUID(nobody))
	if err != nil {
		t.Fatalf("Dial with WithServerUID(%d): %v", nobody, err)
	}
	other.Close()
}
