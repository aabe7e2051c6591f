package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"runtime/debug"
	"time"

	"github.com/statebus/statebus/internal/config"
	"github.com/statebus/statebus/internal/dashboard"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/httpapi"
	"github.com/statebus/statebus/internal/logging"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/systemd"
	"github.com/statebus/statebus/internal/telemetry"
	"github.com/statebus/statebus/protocol"
)

// daemon is a running statebusd: the bus, its monitoring endpoint and its
// conversation with the service manager.
type daemon struct {
	args   []string
	getenv func(string) string
	st     *config.Settings
	logs   *logging.Logs
	log    *slog.Logger
	srv    *server.Server
	fed    *federation.Node // nil: no federation
	api    *httpapi.API
	sd     *systemd.Notifier
	// activated: the socket came from systemd and stays when we stop.
	activated bool

	stopWatchdog chan struct{}
	watchdogDone chan struct{}
	stopTracing  func(context.Context) error // flushes spans; a no-op without tracing
}

// memoryBudget is what the service may hold: a fixed allowance for the
// runtime, the registry and the monitoring endpoint, plus each allowed
// connection's budget (its read buffer and its outbound hard cap).
func memoryBudget(cfg server.Config) int64 {
	b := 64<<20 + int64(cfg.MaxConnections)*int64(cfg.MaxMessageBytes+cfg.MaxConnectionBytes)
	if cfg.TLS.Listen != "" {
		// TLS keeps records and the peer's certificates per connection,
		// and per handshake in flight.
		b += int64(cfg.MaxConnections+cfg.TLS.MaxHandshakes) * server.TLSConnBytes
	}
	return b
}

// start sets up logging, serves the bus and the monitoring endpoint, and
// tells systemd it is ready.
func start(st *config.Settings, args []string, getenv func(string) string, stderr io.Writer) (*daemon, error) {
	format, out := logging.Output(st.LogFormat, stderr, getenv)
	logs, err := logging.New(out, logging.Options{Format: format, Levels: st.LogLevels})
	if err != nil {
		return nil, err
	}
	d := &daemon{args: args, getenv: getenv, st: st, logs: logs, log: logs.Logger(logging.Daemon),
		sd: systemd.NewNotifier(getenv)}
	d.warnUnknownKeys(st)

	lns, err := systemd.Listeners(getenv, os.Getpid())
	if err != nil {
		return nil, err
	}
	if len(lns) > 1 {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, fmt.Errorf("socket activation passed %d sockets; statebusd serves one (one ListenStream= in statebusd.socket)", len(lns))
	}
	cfg := st.Server
	if getenv("GOMEMLIMIT") == "" {
		// Every connection's memory is bounded; make the garbage collector
		// keep the whole process near the sum of those bounds instead of
		// letting the heap grow to twice its live size first.
		limit := memoryBudget(cfg)
		debug.SetMemoryLimit(limit)
		d.log.Debug("memory limit from the connection budgets", "bytes", limit)
	}
	if len(lns) == 1 {
		d.activated = true
		if path := lns[0].Addr().String(); path != "" && path != cfg.SocketPath {
			d.log.Info("socket activation: serving the socket systemd passed instead of the configured one",
				"socket", path, "configured", cfg.SocketPath)
			cfg.SocketPath = path
		}
	}
	var metrics *httpapi.Metrics
	if st.HTTPAddr != "" {
		metrics = httpapi.NewMetrics()
		cfg.OnRouteLatency = metrics.ObserveRouteLatency
	}
	cfg.Logger = logs.Logger(logging.Server)
	if !d.activated {
		if err := ensureSocketDir(cfg.SocketPath, d.log); err != nil {
			return nil, err
		}
	}
	if st.Cluster.Mode != "" {
		fc := st.Cluster
		fc.Logger = logs.Logger(logging.Server)
		if dc := cfg.Durable.Store; dc.Dir != "" {
			// Durable mailboxes live in the federation's JetStream: its
			// node flushes as DurableSync says (docs/durability.md).
			fc.SyncAlways = dc.Sync != durable.SyncInterval
			fc.SyncInterval = dc.SyncInterval
		}
		d.log.Info("joining the federation", "mode", fc.Mode, "name", fc.Name, "node", fc.Node)
		if d.fed, err = federation.Start(context.Background(), fc); err != nil {
			return nil, err
		}
		cfg.Federation = d.fed
		d.log.Info("federation joined", "node", d.fed.Name(), "nats", d.fed.ClientURL())
	}
	tp, stopTracing, err := telemetry.Setup(context.Background(), "statebusd", getenv)
	if err != nil {
		return nil, err
	}
	d.stopTracing = stopTracing
	if tp != nil {
		cfg.Tracer = tp.Tracer("github.com/statebus/statebus/internal/server")
		d.log.Info("tracing: exporting spans of sampled events by OTLP", "endpoint", otlpEndpoint(getenv))
	}
	d.srv, err = server.New(cfg)
	if err == nil {
		if d.activated {
			err = d.srv.StartOn(lns[0])
		} else {
			err = d.srv.Start()
		}
	}
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		if d.fed != nil {
			d.fed.Close()
		}
		if d.srv != nil && cfg.SocketPath == protocol.PipePath(protocol.DefaultPipeName) {
			// Clients look here first: say loudly that this bus is not
			// theirs, whatever answers on the path now.
			d.log.Error("cannot serve the default socket path; clients that connect to it are not talking to this statebusd",
				"socket", cfg.SocketPath, "err", err)
		}
		return nil, err
	}
	status := "serving " + d.srv.Addr()
	if a := d.srv.TLSAddr(); a != nil {
		status += " and TLS on " + a.String()
	}
	if metrics != nil {
		if err := metrics.Watch(d.srv); err != nil {
			d.shutdownBus(context.Background())
			return nil, err
		}
		d.api = httpapi.New(d.srv, metrics, logs.Logger(logging.HTTP))
		d.api.PublishMachines = st.HTTPMachines
		dash := dashboard.New(d.srv, dashboard.Options{Machines: st.HTTPMachines, Token: st.DashboardToken})
		d.api.Mount("/dashboard/", "the live web page: machines, events, traffic, overload", dash, dash.Close)
		addr, err := d.api.Start(st.HTTPAddr)
		switch {
		case err != nil && !st.HTTPConfigured:
			// The default address is a convenience, not the operator's
			// choice: another bus or program holding it must not stop
			// this bus. An address the operator set is a promise to
			// whoever scrapes it, and fails hard below.
			d.log.Warn("monitoring endpoint not started: its default address is taken; the bus serves without it",
				"addr", st.HTTPAddr, "err", err,
				"hint", "set Http (--http, STATEBUS_HTTP) to a free address, or to off")
			d.api = nil
			status += "; no monitoring endpoint (" + st.HTTPAddr + " taken)"
		case err != nil:
			d.log.Error("stopping: the bus started but the configured monitoring endpoint cannot be served",
				"addr", st.HTTPAddr, "err", err)
			d.shutdownBus(context.Background())
			return nil, err
		default:
			d.log.Info("monitoring endpoint listening", "addr", addr.String(),
				"url", "http://"+addr.String()+"/status")
			status += "; monitoring on http://" + addr.String()
		}
	}
	d.notify("READY=1\nSTATUS=" + status)
	d.startWatchdog()
	return d, nil
}

// warnUnknownKeys names each config key that is no setting, and the
// setting it most resembles: usually a misspelling that silently leaves
// the default in place.
func (d *daemon) warnUnknownKeys(st *config.Settings) {
	for _, k := range st.UnknownKeys {
		d.log.Warn("unknown configuration key ignored", "key", "MessageBus:"+k.Key,
			"did_you_mean", "MessageBus:"+k.Nearest)
	}
}

// notify tells systemd, when it is listening, and logs a failure.
func (d *daemon) notify(state string) {
	if err := d.sd.Notify(state); err != nil {
		d.log.Warn("cannot notify systemd", "err", err, "socket", d.getenv("NOTIFY_SOCKET"))
	}
}

// startWatchdog pings systemd's watchdog at half its timeout while the bus
// is healthy; a bus that stopped accepting misses pings and is restarted.
func (d *daemon) startWatchdog() {
	every := systemd.WatchdogInterval(d.getenv, os.Getpid())
	if every <= 0 || d.sd == nil {
		return
	}
	d.log.Debug("watchdog enabled", "ping_every", every)
	d.stopWatchdog, d.watchdogDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(d.watchdogDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if d.srv.Health().IsHealthy {
				d.notify("WATCHDOG=1")
			} else {
				d.log.Error("unhealthy: not pinging the watchdog")
			}
			select {
			case <-d.stopWatchdog:
				return
			case <-t.C:
			}
		}
	}()
}

// reload re-reads the configuration (file, environment and flags, as at
// start) and applies what can change while connections stay open: the log
// levels and the access policy. Anything else it names as needing a
// restart. A configuration that does not load changes nothing.
func (d *daemon) reload() {
	d.notify(systemd.Reloading())
	defer d.notify("READY=1")
	st, err := config.Load(d.args, d.getenv)
	if err != nil {
		d.log.Error("reload failed; the running configuration stays", "err", err)
		return
	}
	if err := d.srv.SetAccess(st.Server.Access); err != nil {
		d.log.Error("reload failed; the running configuration stays", "err", err)
		return
	}
	if err := d.srv.SetRoutes(st.Server.Routes); err != nil { // checked by Load; cannot fail here
		d.log.Error("reload of the routing rules failed; the running rules stay", "err", err)
	}
	d.warnUnknownKeys(st)
	d.logs.SetLevels(st.LogLevels)
	if err := d.srv.ReloadTLS(); err != nil {
		d.log.Error("reload of the TLS certificates failed; the running ones stay", "err", err)
	}
	if changed := needRestart(d.st, st); len(changed) > 0 {
		d.log.Warn("reload: some settings change only on restart", "settings", changed)
	}
	levels := make([]any, 0, 2*len(st.LogLevels))
	for _, c := range logging.Categories() {
		levels = append(levels, c, st.LogLevels[c].String())
	}
	d.log.Info("reloaded: log levels and access rules applied to new connections, routing rules to the next event",
		"routes", len(st.Server.Routes),
		slog.Group("levels", levels...))
	d.st.Server.Access, d.st.Server.Routes, d.st.LogLevels = st.Server.Access, st.Server.Routes, st.LogLevels
}

// needRestart names the settings that differ between old and new other
// than the ones reload applies.
func needRestart(old, new *config.Settings) []string {
	var out []string
	if !reflect.DeepEqual(old.Cluster, new.Cluster) {
		out = append(out, "Cluster")
	}
	if old.HTTPAddr != new.HTTPAddr {
		out = append(out, "Http")
	}
	if old.LogFormat != new.LogFormat {
		out = append(out, "LogFormat")
	}
	a, b := old.Server, new.Server
	for _, c := range []*server.Config{&a, &b} {
		c.Access, c.Routes, c.Logger, c.OnRouteLatency = server.Config{}.Access, nil, nil, nil
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, va.Type().Field(i).Name)
		}
	}
	return out
}

// stop shuts down in order: tell systemd, stop the bus (it drains queued
// events), then the monitoring endpoint, which reports 503 meanwhile.
func (d *daemon) stop(sig os.Signal) int {
	if sig != nil {
		d.log.Info("shutting down", "signal", sig.String())
	}
	d.notify("STOPPING=1")
	if d.stopWatchdog != nil {
		close(d.stopWatchdog)
		<-d.watchdogDone
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.st.Server.ShutdownTimeout)
	defer cancel()
	code := 0
	if err := d.shutdownBus(ctx); err != nil {
		d.log.Error("shutdown incomplete", "err", err)
		code = 1
	}
	if d.api != nil {
		hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
		defer hcancel()
		d.api.Shutdown(hctx)
	}
	if d.stopTracing != nil {
		tctx, tcancel := context.WithTimeout(context.Background(), time.Second)
		defer tcancel()
		if err := d.stopTracing(tctx); err != nil {
			d.log.Warn("spans not exported", "err", err)
		}
	}
	d.log.Info("stopped")
	return code
}

// shutdownBus stops the bus. A socket systemd passed (socket activation)
// stays in place: Shutdown removes only a socket its Start created.
func (d *daemon) shutdownBus(ctx context.Context) error {
	err := d.srv.Shutdown(ctx)
	if d.fed != nil {
		d.fed.Close() // after the connections: their ids are released first
	}
	return err
}

// otlpEndpoint is where spans go, for the log.
func otlpEndpoint(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return "http://localhost:4318"
}
