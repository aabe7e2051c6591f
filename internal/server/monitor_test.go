package server_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestIdleWarnsOncePerIdlePeriod: an idle bus warns "no activity" once,
// then says it at Info on every later health tick, so that `journalctl -p
// warning` is not flooded; activity ends the period and the next idle
// period warns again.
func TestIdleWarnsOncePerIdlePeriod(t *testing.T) {
	var buf bustest.Buffer
	srv := bustest.Start(t, func(c *server.Config) {
		c.HealthCheckInterval = 10 * time.Millisecond
		c.IdleWarning = 150 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	})
	count := func(level string) int {
		return strings.Count(buf.String(), "level="+level+` msg="no activity"`)
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return count("INFO") >= 3 },
		"no Info repeats of the idle message: %s", buf.String())
	if n := count("WARN"); n != 1 {
		t.Fatalf("%d warnings in one idle period, want 1:\n%s", n, buf.String())
	}

	dialRaw(t, srv).Connect("a") // activity: the idle period ends
	bustest.Eventually(t, 10*time.Second, func() bool { return count("WARN") == 2 },
		"no warning for the second idle period: %s", buf.String())
}
