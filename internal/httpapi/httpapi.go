// Package httpapi is statebusd's monitoring endpoint: health for load
// balancers and probes, status and the registry as JSON for people and
// scripts, and Prometheus metrics. It only reads the server; nothing on it
// changes the bus.
//
//	GET /healthz   200 {"status":"ok",...} while healthy, else 503
//	GET /status    health, uptime, peak connections, every counter
//	GET /machines  the registry, as the Machines request returns it, only
//	               when PublishMachines is set (403 otherwise)
//	GET /metrics   Prometheus text exposition
//	GET /dashboard/  the live web page (package dashboard), when mounted
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// API serves the monitoring endpoints for one server.
type API struct {
	// PublishMachines serves the registry (ids, pids, uids, process
	// names) on /machines. The endpoint is reachable by every local user,
	// including those the bus socket refuses, so it is off unless the
	// operator turns it on (MessageBus:HttpMachines); the registry is
	// always available on the socket (statebus machines). Set it before
	// Start.
	PublishMachines bool

	srv   *server.Server
	src   source // srv, but a test's fake can stand in for /status
	log   *slog.Logger
	mux   *http.ServeMux
	hs    *http.Server
	stops []func()
	help  []string // index lines of mounted handlers
}

// New returns the endpoints for srv, with metrics (already watching srv)
// on /metrics. log receives HTTP errors, and each request at Debug.
func New(srv *server.Server, metrics *Metrics, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{srv: srv, src: srv, log: log, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /{$}", a.index)
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /status", a.status)
	a.mux.HandleFunc("GET /machines", a.machines)
	reg := metrics.Registry()
	a.mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			Registry: reg,
			// A collector that fails (a /proc file hidden by a sandbox)
			// costs its own series, not the whole scrape.
			ErrorHandling: promhttp.ContinueOnError,
		})))
	return a
}

// Mount serves GET requests under path (say "/dashboard/") with h, and
// lists path with help on the index. stop, if not nil, runs when Shutdown
// begins: it must end h's streams, which Shutdown would otherwise wait
// for. Mount before Start.
func (a *API) Mount(path, help string, h http.Handler, stop func()) {
	a.mux.Handle("GET "+path, h)
	a.help = append(a.help, fmt.Sprintf("%-10s %s\n", path, help))
	if stop != nil {
		a.stops = append(a.stops, stop)
	}
}

// ServeHTTP serves one request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	a.mux.ServeHTTP(rec, r)
	a.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.code,
		"remote", r.RemoteAddr, "took", time.Since(start))
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in
// the background until Shutdown. It returns the address it listens on.
func (a *API) Start(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot serve the monitoring endpoint on %s: %w (set --http to another address, or --http '' to turn it off)", addr, err)
	}
	a.hs = &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := a.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("monitoring endpoint stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Shutdown stops serving, letting requests in flight finish until ctx
// ends.
func (a *API) Shutdown(ctx context.Context) error {
	if a.hs == nil {
		return nil
	}
	for _, stop := range a.stops {
		stop()
	}
	return a.hs.Shutdown(ctx)
}

// Health is /healthz's document: "status" for probes, then the fields of
// the Health request.
type Health struct {
	Status string `json:"status"` // "ok" or "unavailable"
	// Reason says why the service is unavailable.
	Reason             string `json:"reason,omitempty"`
	IsHealthy          bool
	ConnectionCount    int
	RegisteredMachines int
	LastActivityAt     time.Time
}

// Status is /status's document: the Health request's answer (the
// original's health fields, uptime, peak connections and when) plus every
// counter the service keeps. server.Stats is embedded, so a counter added
// there appears here without a change.
type Status struct {
	Status string `json:"status"`
	protocol.HealthStatus
	// Socket is where the service listens.
	Socket string
	server.Stats
}

func (a *API) state() (status, reason string) {
	if a.srv.Health().IsHealthy {
		return "ok", ""
	}
	select {
	case <-a.srv.Done():
		return "unavailable", "shutting down"
	default:
		return "unavailable", "no longer accepting connections"
	}
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	h := a.srv.Health()
	st, reason := a.state()
	code := http.StatusOK
	if !h.IsHealthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, Health{Status: st, Reason: reason, IsHealthy: h.IsHealthy,
		ConnectionCount: h.ConnectionCount, RegisteredMachines: h.RegisteredMachines,
		LastActivityAt: h.LastActivityAt})
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	s, _ := a.state()
	writeJSON(w, http.StatusOK, Status{Status: s, HealthStatus: a.src.Status(), Socket: a.srv.Addr(),
		Stats: a.src.Stats()})
}

func (a *API) machines(w http.ResponseWriter, r *http.Request) {
	if !a.PublishMachines {
		http.Error(w, "the registry is not published here: every local user can read this endpoint. "+
			"Ask the bus socket (statebus machines), or set MessageBus:HttpMachines to true to publish it.", http.StatusForbidden)
		return
	}
	ms := a.srv.MachineInfos()
	if ms == nil {
		ms = []protocol.MachineInfo{}
	}
	writeJSON(w, http.StatusOK, ms)
}

func (a *API) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "statebusd monitoring endpoint\n\n"+
		"/healthz   200 while healthy, else 503\n"+
		"/status    health, uptime, peak connections, counters (JSON)\n"+
		"/machines  registered machines (JSON), if MessageBus:HttpMachines is set\n"+
		"/metrics   Prometheus metrics\n")
	for _, h := range a.help {
		fmt.Fprint(w, h)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
