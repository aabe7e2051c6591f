package durable_test

import (
	"testing"

	"github.com/statebus/statebus/internal/bustest"
	"go.uber.org/goleak"
)

// TestMain checks every test of the package (internal and external) for
// leaked goroutines. It is in the external test package because the
// internal one cannot import bustest (bustest imports server, which
// imports durable).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		bustest.IgnoreWinio,
		// nats-server keeps a few process-wide goroutines after Shutdown.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*diskIOSemaphore).run"),
	)
}
