package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/protocol"
)

func init() {
	commands["health"] = command{"show the service's health; exit 1 if unhealthy or unreachable, 3 if full", runHealth}
}

// exitFull is health's exit code when the service is up but has as many
// connections as its MaxConnections allows.
const exitFull = 3

// healthResult is health's --json document: the service's status, the
// socket it was asked on, and whether its connections are at its
// MaxConnections.
type healthResult struct {
	statebus.HealthStatus
	Socket string
	Full   bool
}

func runHealth(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "health", "[flags]",
		`Asks the service for its health: whether it is healthy, how many connections
and registered machines it has, when it last saw activity, its uptime, its peak
connections and its version. Exits 1 when it is unhealthy or cannot be reached,
so it works as a liveness probe. Exits 3 when it is running and healthy but
full: its connections are at its MaxConnections (it refuses the next client,
or refused this one with "Too many connections"). Exit codes: 0 healthy,
1 unhealthy or unreachable, 2 usage error, 3 full.`,
		`statebus health
statebus health --json | jq .ConnectionCount`)
	timeout := f.Duration("timeout", 10*time.Second, "how long to wait for the service")
	if _, code, ok := f.parse(args, 0, 0); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	h, err := statebus.Health(ctx, f.bus()...)
	if errors.Is(err, protocol.ErrTooManyConnections) {
		failure(e, f, err)
		return exitFull
	}
	if err != nil {
		return failure(e, f, err)
	}
	full := h.MaxConnections > 0 && h.ConnectionCount >= h.MaxConnections
	code := 0
	switch {
	case !h.IsHealthy:
		code = 1
	case full:
		code = exitFull
	}
	if f.json {
		writeJSON(e.stdout, healthResult{h, f.socket(), full})
		return code
	}
	o := stdout(e)
	switch {
	case h.IsHealthy && full:
		o.check(false, "statebusd on %s is healthy but full: %d of %d connections (MaxConnections) are in use, so it refuses the next client", f.socket(), h.ConnectionCount, h.MaxConnections)
	case h.IsHealthy:
		o.check(true, "statebusd on %s is healthy", f.socket())
	default:
		o.check(false, "statebusd on %s is unhealthy: it is shutting down or no longer accepting connections", f.socket())
	}
	now := time.Now()
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), age(now.Sub(t)))
	}
	limit := ""
	if h.MaxConnections > 0 {
		limit = fmt.Sprintf(", limit %d", h.MaxConnections)
	}
	o.printf("  Version:             %s\n", h.Version)
	o.printf("  Connections:         %d (this one included%s)\n", h.ConnectionCount, limit)
	o.printf("  Peak connections:    %d at %s\n", h.PeakConnections, when(h.PeakConnectionsAt))
	o.printf("  Registered machines: %d\n", h.RegisteredMachines)
	o.printf("  Last activity:       %s\n", when(h.LastActivityAt))
	o.printf("  Uptime:              %s (since %s)\n",
		age(time.Duration(h.UptimeSeconds*float64(time.Second))), h.StartedAt.Local().Format("2006-01-02 15:04:05"))
	return code
}
