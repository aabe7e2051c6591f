// Package config loads statebusd's configuration: an appsettings.json-shaped
// file (the original service's keys work unchanged), overridden by
// environment variables, overridden by command-line flags.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/logging"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// DefaultHTTPAddr is where the monitoring endpoint listens unless
// configured: loopback only, as nats-server's monitoring port is usually
// kept.
const DefaultHTTPAddr = "127.0.0.1:9555"

// Settings is the result of loading: the server's configuration and the
// log settings.
type Settings struct {
	Server   server.Config
	PipeName string
	// LogLevels is each log category's level (see package logging).
	LogLevels map[string]slog.Level
	// LogFormat is "text", "json" or "" (choose: JSON when stderr goes to
	// the journal, else text).
	LogFormat string
	// HTTPAddr is the monitoring endpoint's address, "" for none.
	HTTPAddr string
	// HTTPConfigured is whether the operator chose HTTPAddr (file,
	// environment or flag). A configured address that cannot be served
	// stops statebusd; the default one, when taken, is skipped with a
	// warning, so that the endpoint never stops a bus started with
	// defaults (two buses on one host, or another program on the port).
	HTTPConfigured bool
	// HTTPMachines publishes the registry on the endpoint's /machines,
	// and the machines, traffic and event tail on its /dashboard/.
	HTTPMachines bool
	Version      bool
	// SelfTest asks statebusd to run the standalone self-test (a bus of
	// its own on a temporary socket) instead of serving.
	SelfTest bool
	// Cluster is the federation membership (MessageBus:Cluster and the
	// Cluster* settings); Mode "" is off.
	Cluster federation.Config
	// UnknownKeys are the config file's MessageBus keys that name no
	// setting, for statebusd to warn about once it logs.
	UnknownKeys []UnknownKey
	// DashboardToken, when set, is the secret the dashboard asks for.
	DashboardToken string
}

// setting is one configurable value: its key in the file's MessageBus
// section, its environment variable and its flag.
type setting struct {
	key, env, flag, usage string
	set                   func(s *Settings, v string) error
}

var settings = []setting{
	{"PipeName", "STATEBUS_PIPE_NAME", "pipe-name", "pipe name, or absolute socket path (default " + protocol.DefaultPipeName + ")",
		func(s *Settings, v string) error { s.PipeName = v; return nil }},
	{"SocketMode", "STATEBUS_SOCKET_MODE", "socket-mode", "socket file permissions, octal (default 0660)",
		func(s *Settings, v string) error {
			m, err := strconv.ParseUint(v, 8, 32)
			s.Server.SocketMode = os.FileMode(m)
			return err
		}},
	{"PipeSecurity", "STATEBUS_PIPE_SECURITY", "pipe-security", "Windows: who may open the pipe: owner (SYSTEM, Administrators and the service's account), interactive (those and the users logged on interactively) or an SDDL security descriptor, D:...; ignored on Unix (default owner)",
		func(s *Settings, v string) error { s.Server.PipeSecurity = v; return nil }}, // Validate says what is wrong
	{"MaxConnections", "STATEBUS_MAX_CONNECTIONS", "max-connections", "most clients connected at once (default 100)",
		intSetting(func(s *Settings, n int) { s.Server.MaxConnections = n })},
	{"HealthCheckIntervalSeconds", "STATEBUS_HEALTH_CHECK_INTERVAL_SECONDS", "health-interval", "seconds between health log lines; 0 disables (default 30)",
		intSetting(func(s *Settings, n int) { s.Server.HealthCheckInterval = time.Duration(n) * time.Second })},
	{"MaxMessageBytes", "STATEBUS_MAX_MESSAGE_BYTES", "max-message-bytes", "longest request line accepted (default 1048576)",
		intSetting(func(s *Settings, n int) { s.Server.MaxMessageBytes = n })},
	{"MaxQueueBytes", "STATEBUS_MAX_QUEUE_BYTES", "max-queue-bytes", "bytes queued per connection before senders wait (default 4194304)",
		intSetting(func(s *Settings, n int) { s.Server.MaxQueueBytes = n })},
	{"MaxQueueEvents", "STATEBUS_MAX_QUEUE_EVENTS", "max-queue-events", "events queued per connection before senders wait (default 65536)",
		intSetting(func(s *Settings, n int) { s.Server.MaxQueueEvents = n })},
	{"HandshakeTimeoutSeconds", "STATEBUS_HANDSHAKE_TIMEOUT_SECONDS", "handshake-timeout", "seconds a new connection has to register (default 10)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Server.HandshakeTimeout = d })},
	{"SlowConsumerTimeoutSeconds", "STATEBUS_SLOW_CONSUMER_TIMEOUT_SECONDS", "slow-consumer-timeout", "seconds a sender waits for a full target before the event is refused (default 5)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Server.SlowConsumerTimeout = d })},
	{"MaxConnectionBytes", "STATEBUS_MAX_CONNECTION_BYTES", "max-connection-bytes", "hard cap on what the service holds for one connection's outbound side; past it the connection is closed as a slow consumer (default 16777216; at least twice MaxQueueBytes + MaxMessageBytes)",
		intSetting(func(s *Settings, n int) { s.Server.MaxConnectionBytes = n })},
	{"MaxIdsPerConnection", "STATEBUS_MAX_IDS_PER_CONNECTION", "max-ids-per-connection", "machine ids one connection may hold (default 64)",
		intSetting(func(s *Settings, n int) { s.Server.MaxIDsPerConnection = n })},
	{"MaxGroupsPerConnection", "STATEBUS_MAX_GROUPS_PER_CONNECTION", "max-groups-per-connection", "group memberships one connection may hold (default 64)",
		intSetting(func(s *Settings, n int) { s.Server.MaxGroupsPerConnection = n })},
	{"MaxWatchesPerConnection", "STATEBUS_MAX_WATCHES_PER_CONNECTION", "max-watches-per-connection", "watch filters one connection may install (default 16)",
		intSetting(func(s *Settings, n int) { s.Server.MaxWatchesPerConnection = n })},
	{"MaxPatternBytes", "STATEBUS_MAX_PATTERN_BYTES", "max-pattern-bytes", "longest pattern of a watch filter (default 256)",
		intSetting(func(s *Settings, n int) { s.Server.MaxPatternBytes = n })},
	{"MaxPendingRequests", "STATEBUS_MAX_PENDING_REQUESTS", "max-pending-requests", "requests one connection may have waiting for replies (default 1024)",
		intSetting(func(s *Settings, n int) { s.Server.MaxPendingRequests = n })},
	{"RequestTimeoutSeconds", "STATEBUS_REQUEST_TIMEOUT_SECONDS", "request-timeout", "longest a request waits for its reply (default 300)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Server.RequestTimeout = d })},
	{"WriteTimeoutSeconds", "STATEBUS_WRITE_TIMEOUT_SECONDS", "write-timeout", "seconds one write to a client may stay blocked before it is closed as a slow consumer and its queued events fail (default 10)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Server.WriteTimeout = d })},
	{"MaxConnectionsPerUid", "STATEBUS_MAX_CONNECTIONS_PER_UID", "max-connections-per-uid", "connections one user may have open; root and the service's user are exempt (default 32)",
		intSetting(func(s *Settings, n int) { s.Server.MaxConnectionsPerUID = n })},
	{"HttpMachines", "STATEBUS_HTTP_MACHINES", "http-machines", "publish the registry on the monitoring endpoint's /machines, readable by every local user (default false)",
		func(s *Settings, v string) error {
			b, err := strconv.ParseBool(v)
			s.HTTPMachines = b
			return err
		}},
	{"CompactFraming", "STATEBUS_COMPACT_FRAMING", "compact-framing", "offer the compact binary framing to clients that ask for it (Go clients do); false answers everyone in JSON lines, as the .NET service does; see docs/protocol.md (default true)",
		func(s *Settings, v string) error {
			b, err := strconv.ParseBool(v)
			s.Server.NoCompactFraming = !b
			return err
		}},
	{"DashboardToken", "STATEBUS_DASHBOARD_TOKEN", "dashboard-token", "a secret the monitoring endpoint's /dashboard/ asks for (open /dashboard/?token=...); prefer the environment or the file, which ps does not show (default none)",
		func(s *Settings, v string) error { s.DashboardToken = v; return nil }},
	{"ShutdownTimeoutSeconds", "STATEBUS_SHUTDOWN_TIMEOUT_SECONDS", "shutdown-timeout", "seconds to flush queued events on shutdown (default 5)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Server.ShutdownTimeout = d })},
	{"TlsListen", "STATEBUS_TLS_LISTEN", "tls-listen", "address to serve remote clients on with mutual TLS, e.g. 0.0.0.0:9556; needs TlsCert, TlsKey and TlsClientCa; see docs/remote.md (default off)",
		func(s *Settings, v string) error {
			if strings.EqualFold(v, "off") {
				v = ""
			}
			s.Server.TLS.Listen = v
			return nil
		}},
	{"TlsCert", "STATEBUS_TLS_CERT", "tls-cert", "the server's certificate chain, PEM; read again on reload (default none)",
		func(s *Settings, v string) error { s.Server.TLS.Cert = v; return nil }},
	{"TlsKey", "STATEBUS_TLS_KEY", "tls-key", "the server certificate's private key, PEM (default none)",
		func(s *Settings, v string) error { s.Server.TLS.Key = v; return nil }},
	{"TlsClientCa", "STATEBUS_TLS_CLIENT_CA", "tls-client-ca", "CA certificates, PEM, that sign the clients' certificates; only their clients are served (default none)",
		func(s *Settings, v string) error { s.Server.TLS.ClientCA = v; return nil }},
	{"TlsMaxHandshakes", "STATEBUS_TLS_MAX_HANDSHAKES", "tls-max-handshakes", "TLS handshakes in flight at once; past it a new connection is closed at once (default 64)",
		intSetting(func(s *Settings, n int) { s.Server.TLS.MaxHandshakes = n })},
	{"TlsMaxHandshakesPerAddress", "STATEBUS_TLS_MAX_HANDSHAKES_PER_ADDRESS", "tls-max-handshakes-per-address", "TLS handshakes in flight from one IP address (an IPv6 /64) (default 8)",
		intSetting(func(s *Settings, n int) { s.Server.TLS.MaxHandshakesPerAddress = n })},
	{"PlainTcp", "STATEBUS_PLAIN_TCP", "plain-tcp", "loopback address to also serve without TLS, e.g. 127.0.0.1:9557; Linux only; peers are known by uid (default off)",
		func(s *Settings, v string) error {
			if strings.EqualFold(v, "off") {
				v = ""
			}
			s.Server.PlainTCP = v
			return nil
		}},
	{"Http", "STATEBUS_HTTP", "http", "monitoring endpoint address (/healthz, /status, /machines, /metrics, /dashboard/); \"\" or off disables, port 0 picks one (default " + DefaultHTTPAddr + ")",
		func(s *Settings, v string) error {
			if strings.EqualFold(v, "off") {
				v = ""
			}
			s.HTTPAddr, s.HTTPConfigured = v, true
			return nil
		}},
	{"Cluster", "STATEBUS_CLUSTER", "cluster", "federation through NATS: off, embedded (start a nats-server node that joins a cluster by routes) or external (connect to a NATS cluster by URL); see docs/federation.md (default off)",
		func(s *Settings, v string) error {
			switch strings.ToLower(v) {
			case "off", "":
				s.Cluster.Mode = ""
			case federation.Embedded, federation.External:
				s.Cluster.Mode = strings.ToLower(v)
			default:
				return errors.New("want off, embedded or external")
			}
			return nil
		}},
	{"ClusterName", "STATEBUS_CLUSTER_NAME", "cluster-name", "the federation's name, the same on every daemon; also the NATS cluster name in embedded mode (default statebus)",
		func(s *Settings, v string) error { s.Cluster.Name = v; return nil }},
	{"ClusterNode", "STATEBUS_CLUSTER_NODE", "cluster-node", "this daemon's name in the federation, unique; letters, digits, - and _ (default the host name)",
		func(s *Settings, v string) error { s.Cluster.Node = v; return nil }},
	{"ClusterClientListen", "STATEBUS_CLUSTER_CLIENT_LISTEN", "cluster-client-listen", "embedded: the NATS node's client address, for NATS tools (default 127.0.0.1:0, a free port)",
		func(s *Settings, v string) error { s.Cluster.ClientListen = v; return nil }},
	{"ClusterRouteListen", "STATEBUS_CLUSTER_ROUTE_LISTEN", "cluster-route-listen", "embedded: the address the other nodes' routes reach this node on, e.g. 0.0.0.0:6222 (default none; required in embedded mode)",
		func(s *Settings, v string) error { s.Cluster.RouteListen = v; return nil }},
	{"ClusterRoutes", "STATEBUS_CLUSTER_ROUTES", "cluster-routes", "embedded: comma-separated routes to the other nodes, e.g. nats-route://host2:6222,nats-route://host3:6222 (default none)",
		func(s *Settings, v string) error { s.Cluster.Routes = splitList(v); return nil }},
	{"ClusterStoreDir", "STATEBUS_CLUSTER_STORE_DIR", "cluster-store-dir", "embedded: the NATS node's JetStream directory (default none; required in embedded mode)",
		func(s *Settings, v string) error { s.Cluster.StoreDir = v; return nil }},
	{"ClusterUrls", "STATEBUS_CLUSTER_URLS", "cluster-urls", "external: comma-separated NATS URLs, e.g. nats://n1:4222,tls://n2:4222 (default none; required in external mode)",
		func(s *Settings, v string) error { s.Cluster.URLs = splitList(v); return nil }},
	{"ClusterCredentials", "STATEBUS_CLUSTER_CREDENTIALS", "cluster-credentials", "external: NATS credentials file (default none)",
		func(s *Settings, v string) error { s.Cluster.Credentials = v; return nil }},
	{"ClusterTlsCa", "STATEBUS_CLUSTER_TLS_CA", "cluster-tls-ca", "external: CA file to verify the NATS servers with (default none: the system's)",
		func(s *Settings, v string) error { s.Cluster.TLSCA = v; return nil }},
	{"ClusterTlsCert", "STATEBUS_CLUSTER_TLS_CERT", "cluster-tls-cert", "external: client certificate file for NATS (default none)",
		func(s *Settings, v string) error { s.Cluster.TLSCert = v; return nil }},
	{"ClusterTlsKey", "STATEBUS_CLUSTER_TLS_KEY", "cluster-tls-key", "external: client key file for NATS (default none)",
		func(s *Settings, v string) error { s.Cluster.TLSKey = v; return nil }},
	{"ClusterLeaseSeconds", "STATEBUS_CLUSTER_LEASE_SECONDS", "cluster-lease", "seconds a daemon's ids outlive its last contact with the federation; a dead or cut-off daemon's ids are released after at most this; keep it above 12, JetStream's leader election plus a renewal (default 15)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Cluster.Lease = d })},
	{"ClusterReplicas", "STATEBUS_CLUSTER_REPLICAS", "cluster-replicas", "NATS nodes that keep the ownership buckets; 3 survives losing one of three (default 0; 0 means embedded: 1 + the routes, at most 3, external: 1)",
		intSetting(func(s *Settings, n int) { s.Cluster.Replicas = n })},
	{"ClusterAckTimeoutSeconds", "STATEBUS_CLUSTER_ACK_TIMEOUT_SECONDS", "cluster-ack-timeout", "seconds a cross-daemon event waits for its acknowledgement before its sender gets an error (default 30)",
		secondsSetting(func(s *Settings, d time.Duration) { s.Cluster.AckTimeout = d })},
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func intSetting(f func(*Settings, int)) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		n, err := strconv.Atoi(v)
		f(s, n)
		return err
	}
}

func secondsSetting(f func(*Settings, time.Duration)) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		x, err := strconv.ParseFloat(v, 64)
		f(s, time.Duration(x*float64(time.Second)))
		return err
	}
}

// Load parses args (without the program name) and builds the settings from
// defaults, the --config file, the environment (getenv) and the flags, in
// that order of precedence, lowest first.
func Load(args []string, getenv func(string) string) (*Settings, error) {
	s := &Settings{Server: server.DefaultConfig(), PipeName: protocol.DefaultPipeName, HTTPAddr: DefaultHTTPAddr}
	fs := flag.NewFlagSet("statebusd", flag.ContinueOnError)
	// Nothing printed here: --help is answered by the caller with Usage
	// on stdout, a bad flag by the caller's error on stderr.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	configPath := fs.String("config", getenv("STATEBUS_CONFIG"), "")
	logLevel := fs.String("log-level", "", "")
	logFormat := fs.String("log-format", "", "")
	fs.BoolVar(&s.Version, "version", false, "")
	fs.BoolVar(&s.SelfTest, "self-test", false, "")
	for _, st := range settings {
		fs.String(st.flag, "", "")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	section := map[string]string{}
	if *configPath != "" {
		f, err := ReadFile(*configPath)
		if err != nil {
			return nil, err
		}
		section = f.Logging.LogLevel
		if section == nil {
			section = map[string]string{}
		}
		unknown, err := f.apply(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", *configPath, err)
		}
		s.UnknownKeys = unknown
	}
	set := func(source, name, v string, st setting) error {
		if err := st.set(s, strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("%s %s: invalid value %q", source, name, v)
		}
		return nil
	}
	for _, st := range settings {
		// STATEBUS_X, and the .NET form MessageBus__X.
		for _, env := range []string{"MessageBus__" + st.key, st.env} {
			if v := getenv(env); v != "" {
				if err := set("environment variable", env, v, st); err != nil {
					return nil, err
				}
			}
		}
	}
	if v := getenv("Logging__LogLevel__Default"); v != "" {
		section["Default"] = v
	}
	levelText := getenv("STATEBUS_LOG_LEVEL")
	var flagErr error
	fs.Visit(func(f *flag.Flag) {
		for _, st := range settings {
			if st.flag == f.Name && flagErr == nil {
				flagErr = set("flag", "--"+f.Name, f.Value.String(), st)
			}
		}
	})
	if flagErr != nil {
		return nil, flagErr
	}
	if *logLevel != "" {
		levelText = *logLevel
	}
	levels, err := logging.Levels(section)
	if err != nil {
		return nil, err
	}
	if levelText != "" {
		// The flag or STATEBUS_LOG_LEVEL sets every category: it is the
		// troubleshooting switch, and wins over the file.
		lvl, err := ParseLevel(levelText)
		if err != nil {
			return nil, err
		}
		for c := range levels {
			levels[c] = lvl
		}
	}
	s.LogLevels = levels
	s.LogFormat = *logFormat
	if s.LogFormat == "" {
		s.LogFormat = getenv("STATEBUS_LOG_FORMAT")
	}
	if s.LogFormat != "" && s.LogFormat != "text" && s.LogFormat != "json" {
		return nil, fmt.Errorf("--log-format must be text or json, not %q", s.LogFormat)
	}
	if s.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(s.HTTPAddr); err != nil {
			return nil, fmt.Errorf("monitoring address %q: want HOST:PORT, e.g. %s (%v)", s.HTTPAddr, DefaultHTTPAddr, err)
		}
	}
	if s.Cluster.Mode != "" {
		c := s.Cluster
		c.Defaults()
		if err := c.Validate(); err != nil {
			return nil, err
		}
	}
	s.Server.SocketPath = protocol.PipePath(s.PipeName)
	if err := s.Server.Validate(); err != nil {
		return nil, err
	}
	if _, err := access.New(s.Server.Access, 0, 0); err != nil {
		return nil, err
	}
	if _, err := router.CompileRules(s.Server.Routes); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseLevel accepts slog's level names and .NET's (Trace, Debug,
// Information, Warning, Error, Critical). Empty means info.
func ParseLevel(s string) (slog.Level, error) { return logging.ParseLevel(s) }
