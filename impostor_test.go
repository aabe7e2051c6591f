package statebus_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/server"
)

// impostorEnv makes the test binary serve a bus on the socket it names
// (runImpostor) instead of running tests.
const impostorEnv = "STATEBUS_TEST_IMPOSTOR"

// nobody is the uid (and gid) the impostor runs as.
const nobody = 65534

// runImpostor is the child of TestUntrustedServer: a working statebusd,
// run by another user, on the socket path, until its stdin closes.
func runImpostor(path string) int {
	cfg := server.DefaultConfig()
	cfg.SocketPath = path
	cfg.SocketMode = 0o666
	cfg.HealthCheckInterval = 0
	srv, err := server.New(cfg)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "impostor: %v\n", err)
		return 1
	}
	io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return 0
}

func TestServerUIDEnvInvalid(t *testing.T) {
	t.Setenv("STATEBUS_SERVER_UID", "statebus")
	_, err := statebus.Dial(context.Background(), "a", statebus.WithPipeName("/nonexistent/bus.sock"))
	if err == nil || err.Error() != `statebus: STATEBUS_SERVER_UID="statebus" is not a user id (a number such as 0 or 1000)` {
		t.Fatalf("Dial: %v", err)
	}
}
