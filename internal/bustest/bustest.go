// Package bustest starts a real statebusd in-process on a temporary socket
// (a named pipe on Windows) for tests, and offers the polling helper the tests use instead of sleeps.
package bustest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/testdir"
	"go.uber.org/goleak"
)

// SocketPath returns a fresh address for a bus, removed when the test
// ends: a short socket path on Unix, a named pipe on Windows
// (busaddr.Temp).
func SocketPath(t testing.TB) string {
	addr, cleanup, err := busaddr.Temp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return addr
}

// Start runs a server with DefaultConfig on a temporary socket, adjusted
// by edit if not nil, and shuts it down when the test ends.
func Start(t testing.TB, edit func(*server.Config)) *server.Server {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.SocketPath = SocketPath(t)
	cfg.HealthCheckInterval = 0
	if edit != nil {
		edit(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// Eventually polls cond every few milliseconds until it holds or timeout
// passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for d := time.Millisecond; ; d = min(2*d, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(d)
	}
}

// Buffer is a bytes.Buffer safe for concurrent use: tests hand it to
// loggers and commands that write from several goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TempDir is t.TempDir for tests that also run under Wine (testdir.New:
// Wine 8 cannot os.RemoveAll a directory).
func TempDir(t testing.TB) string {
	return testdir.New(t)
}

// IgnoreWinio is the goleak option every test binary's TestMain passes:
// on Windows go-winio starts one goroutine per process
// (ioCompletionProcessor) the first time a pipe is used, and by design it
// runs until the process exits. It is ignored by that function's name
// and nothing else; on Unix it never exists.
var IgnoreWinio = goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")
