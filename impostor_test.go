package statebus_test

import (
	"context"
	"testing"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// nobody is the uid (and gid) the impostor runs as.
const nobody = bustest.Nobody

func TestServerUIDEnvInvalid(t *testing.T) {
	t.Setenv("STATEBUS_SERVER_UID", "statebus")
	_, err := statebus.Dial(context.Background(), "a", statebus.WithPipeName("/nonexistent/bus.sock"))
	if err == nil || err.Error() != `statebus: STATEBUS_SERVER_UID="statebus" is not a user id (a number such as 0 or 1000)` {
		t.Fatalf("Dial: %v", err)
	}
}
