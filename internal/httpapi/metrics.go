package httpapi

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/version"
	"github.com/statebus/statebus/protocol"
)

// Metrics is statebusd's Prometheus registry. Make it before the server,
// so that the server's OnRouteLatency can feed the latency histogram, then
// Watch the server.
type Metrics struct {
	reg     *prometheus.Registry
	latency prometheus.Histogram
}

// routeLatencyBuckets span a quick local write (tens of µs) to a target
// that keeps events waiting for seconds.
var routeLatencyBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5,
}

// NewMetrics returns a registry with the Go runtime and process
// collectors and the routing latency histogram.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "statebus_route_latency_seconds",
			Help:    "Time from an event being queued for its target to being written to the target's socket; one event in 64 is sampled.",
			Buckets: routeLatencyBuckets,
		}),
	}
	m.reg.MustRegister(m.latency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRouteLatency records one sampled event's routing latency. It is
// server.Config.OnRouteLatency.
func (m *Metrics) ObserveRouteLatency(d time.Duration) { m.latency.Observe(d.Seconds()) }

// Watch adds srv's gauges and counters, read from srv at each scrape.
func (m *Metrics) Watch(srv *server.Server) error { return m.reg.Register(newCollector(srv)) }

// source is what the monitoring endpoint reads: a *server.Server, or in
// tests a fake that sets every field.
type source interface {
	Status() protocol.HealthStatus
	Stats() server.Stats
}

// Registry is the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// collector reads the server's own counters when scraped, so routing
// does no extra work per event for metrics' sake.
type collector struct {
	srv     source
	reasons []string

	up, conns, connsMax, connsPeak, machines, received, delivered, refused,
	bytesIn, bytesOut, queued, lastActivity, started, build,
	slowClosed, uidRefused, pending, parked, watchCopies, watchDropped, copiesFailed,
	tlsRefused, tlsFailed, tlsInFlight,
	fedSent, fedRecv, fedSentBytes, fedRecvBytes, fedAcked, fedFailed, fedTimedOut, fedInFlight,
	fedLookups, fedSkipped *prometheus.Desc
}

func newCollector(srv source) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("statebus_"+name, help, labels, nil)
	}
	return &collector{
		srv:          srv,
		reasons:      server.RefusalReasons(),
		up:           d("up", "1 while the service accepts connections, 0 once it is shutting down or its listener failed."),
		conns:        d("connections", "Client connections open now."),
		connsMax:     d("connections_max", "MaxConnections: the most clients allowed at once."),
		connsPeak:    d("connections_peak", "The most connections open at once since the service started."),
		machines:     d("machines_registered", "Machine ids registered now."),
		received:     d("events_received_total", "SendEvent requests read, delivered or not."),
		delivered:    d("events_delivered_total", "Event lines written to a target's socket; each broadcast recipient counts once."),
		refused:      d("refusals_total", "Error responses sent, and broadcast or group copies that could not be queued, by reason.", "reason"),
		bytesIn:      d("received_bytes_total", "Bytes read from clients."),
		bytesOut:     d("sent_bytes_total", "Bytes written to clients."),
		queued:       d("outbound_queue_bytes", "Bytes waiting in all connections' outbound queues now."),
		lastActivity: d("last_activity_timestamp_seconds", "When a client last sent a request other than Health or Machines (Unix time); the start time until one does."),
		started:      d("start_time_seconds", "When the service started (Unix time)."),
		build:        d("build_info", "Always 1; the labels say which build runs.", "version", "revision"),
		slowClosed:   d("slow_consumers_closed_total", "Connections closed because what the service held for them reached MaxConnectionBytes."),
		uidRefused:   d("connections_refused_per_uid_total", "Connections refused because their user was at MaxConnectionsPerUid."),
		pending:      d("pending_requests", "Requests waiting for replies now."),
		parked:       d("parked_connections", "Connections idle enough that their reader parked (no goroutine until input arrives) now."),
		watchCopies:  d("watch_copies_total", "Event copies queued for watchers."),
		watchDropped: d("watch_copies_dropped_total", "Event copies a watcher's full queue could not take."),
		copiesFailed: d("rule_copies_failed_total", "Routing rule copies that could not be queued: their target was not connected or not keeping up."),
		tlsRefused:   d("tls_handshakes_refused_total", "TLS connections closed at once because TlsMaxHandshakes or TlsMaxHandshakesPerAddress handshakes were in flight."),
		tlsFailed:    d("tls_handshakes_failed_total", "TLS handshakes that failed or timed out, or whose client certificate was refused."),
		tlsInFlight:  d("tls_handshakes_in_flight", "TLS handshakes under way now."),
		fedSent:      d("federation_messages_sent_total", "Messages sent to other daemons of the federation (events, requests, broadcasts, watch copies, answers)."),
		fedRecv:      d("federation_messages_received_total", "Messages received from other daemons of the federation."),
		fedSentBytes: d("federation_sent_bytes_total", "Bytes of messages sent to other daemons."),
		fedRecvBytes: d("federation_received_bytes_total", "Bytes of messages received from other daemons."),
		fedAcked:     d("federation_acked_total", "Messages to other daemons answered with success (an ack, a reply, a count)."),
		fedFailed:    d("federation_failed_total", "Messages to other daemons answered with an error (target not connected there, slow consumer, ...)."),
		fedTimedOut:  d("federation_timed_out_total", "Messages to other daemons whose answer did not come within ClusterAckTimeoutSeconds (or the request's timeout)."),
		fedInFlight:  d("federation_in_flight", "Messages to other daemons waiting for their answers now."),
		fedLookups:   d("federation_lookups_total", "Reads of the ownership bucket for target ids the directory did not know."),
		fedSkipped:   d("federation_lookups_skipped_total", "Such reads not made: the id was found held nowhere less than a second before, or the daemon was at its rate of reads."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.conns, c.connsMax, c.connsPeak, c.machines, c.received,
		c.delivered, c.refused, c.bytesIn, c.bytesOut, c.queued, c.lastActivity, c.started, c.build,
		c.slowClosed, c.uidRefused, c.pending, c.parked, c.watchCopies, c.watchDropped, c.copiesFailed,
		c.tlsRefused, c.tlsFailed, c.tlsInFlight,
		c.fedSent, c.fedRecv, c.fedSentBytes, c.fedRecvBytes, c.fedAcked, c.fedFailed, c.fedTimedOut, c.fedInFlight,
		c.fedLookups, c.fedSkipped} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	h, st := c.srv.Status(), c.srv.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	up := 0.0
	if h.IsHealthy {
		up = 1
	}
	gauge(c.up, up)
	gauge(c.conns, float64(h.ConnectionCount))
	gauge(c.connsMax, float64(h.MaxConnections))
	gauge(c.connsPeak, float64(h.PeakConnections))
	gauge(c.machines, float64(h.RegisteredMachines))
	counter(c.received, st.EventsReceived)
	counter(c.delivered, st.EventsDelivered)
	for _, r := range c.reasons { // a fixed set: every reason, even at 0
		counter(c.refused, st.Refused[r], r)
	}
	counter(c.bytesIn, st.BytesIn)
	counter(c.bytesOut, st.BytesOut)
	gauge(c.queued, float64(st.QueuedBytes))
	gauge(c.lastActivity, unix(h.LastActivityAt))
	gauge(c.started, unix(h.StartedAt))
	gauge(c.build, 1, version.Version, revision())
	counter(c.slowClosed, st.SlowConsumersClosed)
	counter(c.uidRefused, st.ConnectionsRefusedPerUID)
	gauge(c.pending, float64(st.PendingRequests))
	gauge(c.parked, float64(st.ParkedConnections))
	counter(c.watchCopies, st.WatchCopies)
	counter(c.watchDropped, st.WatchDropped)
	counter(c.copiesFailed, st.RuleCopiesFailed)
	counter(c.tlsRefused, st.TLSHandshakesRefused)
	counter(c.tlsFailed, st.TLSHandshakesFailed)
	gauge(c.tlsInFlight, float64(st.TLSHandshakesInFlight))
	counter(c.fedSent, st.FederationSent)
	counter(c.fedRecv, st.FederationReceived)
	counter(c.fedSentBytes, st.FederationSentBytes)
	counter(c.fedRecvBytes, st.FederationReceivedBytes)
	counter(c.fedAcked, st.FederationAcked)
	counter(c.fedFailed, st.FederationFailed)
	counter(c.fedTimedOut, st.FederationTimedOut)
	gauge(c.fedInFlight, float64(st.FederationInFlight))
	counter(c.fedLookups, st.FederationLookups)
	counter(c.fedSkipped, st.FederationLookupsSkipped)
}

// revision is the commit version.String() reports.
func revision() string {
	s := version.String()
	if i := strings.LastIndex(s, "(commit "); i >= 0 {
		return strings.TrimSuffix(s[i+len("(commit "):], ")")
	}
	return "unknown"
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
