//go:build linux

package server_test

import (
	"os"
	"strings"
	"testing"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestPlainTCPKnowsTheUser: over plain TCP on loopback the service knows
// the peer's uid from the kernel's socket table, so the access policy
// applies as on the socket: another user is refused by default, and
// restricted by its rule when allowed.
func TestPlainTCPKnowsTheUser(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    access.Policy
		want string
	}{
		{"refused by default", access.Policy{},
			`{"Success":false,"Data":null,"Error":"Access denied: uid 65534 is not allowed to connect"}`},
		{"restricted by its rule", access.Policy{AllowUIDs: []int{65534}, Rules: []access.Rule{{UID: 65534, Register: []string{"sensor-*"}}}},
			`{"Success":false,"Data":null,"Error":"Access denied: uid 65534 may not register intruder"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to run a client under a second uid")
			}
			tcp := bustest.Start(t, func(c *server.Config) { c.PlainTCP = "127.0.0.1:0"; c.Access = tc.p })
			out := asNobodyEnv(t, tcp.PlainTCPAddr().String(), []string{"STATEBUS_ACCESS_TCP=1"}, `{"Type":3,"Payload":"intruder"}`)
			if !strings.HasPrefix(out, tc.want+"\n") {
				t.Fatalf("got %q, want %q", out, tc.want)
			}
		})
	}
}
