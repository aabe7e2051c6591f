package bustest

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/statebus/statebus/internal/server"
)

// ImpostorEnv makes a test binary serve a bus on the socket it names
// (RunImpostor) instead of running tests; a TestMain checks it first.
const ImpostorEnv = "STATEBUS_TEST_IMPOSTOR"

// Nobody is the uid (and gid) StartImpostor runs the bus as.
const Nobody = 65534

// RunImpostor is the child side of StartImpostor: a working statebusd,
// run by another user, on path, until its stdin closes. It returns the
// process's exit code.
func RunImpostor(path string) int {
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
