package config

import (
	"fmt"
	"io"
	"strings"
)

// Usage writes statebusd's --help: every flag with its type and default,
// and every environment variable statebusd reads.
func Usage(w io.Writer) {
	fmt.Fprint(w, `Usage: statebusd [flags]

Runs the statebus message bus service. Example:

  statebusd --pipe-name XStateNet.MessageBus --log-level debug

Each setting comes from the --config file's MessageBus section, then the
environment, then the flag; the flag wins.

General flags:
  --config path
        appsettings.json-style config file
        env STATEBUS_CONFIG
  --log-level level
        debug, info, warn or error for every log category (default from
        Logging:LogLevel, else info)
        env STATEBUS_LOG_LEVEL; Logging__LogLevel__Default sets only the default
  --log-format text|json
        log format (default json when stderr is the systemd journal, else text)
        env STATEBUS_LOG_FORMAT
  --version
        print the version and exit
  --self-test
        run the self-test on a temporary socket, print the results and exit
        (0 if all passed)

On Windows, from an elevated prompt:
  statebusd install [--service-name NAME] [--start auto|manual|disabled] [-- flags]
        install this executable as the service NAME (default XStateNetMessageBus)
        running statebusd with flags, and the event log source XStateNet.InterProcess
  statebusd uninstall [--service-name NAME]
        stop and delete the service, remove the event log source

Settings (file key MessageBus:KEY):
`)
	for _, st := range settings {
		fmt.Fprintf(w, "  --%s %s\n        %s\n        env %s or MessageBus__%s; file MessageBus:%s\n",
			st.flag, kind(st.key), st.usage, st.env, st.key, st.key)
	}
	fmt.Fprint(w, `
Also read from the environment:
  TMPDIR            where a pipe name's socket goes: $TMPDIR/CoreFxPipe_NAME (default /tmp)
  GOMEMLIMIT        overrides the memory limit statebusd derives from its connection budgets
  JOURNAL_STREAM    set by systemd: JSON logs with priorities when it names stderr
  NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID
                    set by systemd: readiness, reload and watchdog notifications
  LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES
                    set by systemd: socket activation (statebusd.socket)
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER, OTEL_SERVICE_NAME, ...
                    OpenTelemetry: trace the routing of sampled events by OTLP/HTTP
                    (docs/tracing.md)
`)
}

// kind names the type of value a setting takes, from its key.
func kind(key string) string {
	switch {
	case key == "HealthCheckIntervalSeconds":
		return "int" // whole seconds
	case strings.HasSuffix(key, "Seconds"):
		return "seconds" // a decimal number: 0.5 is half a second
	case key == "SocketMode":
		return "octal"
	case key == "PipeSecurity":
		return "owner|interactive|sddl"
	case key == "HttpMachines":
		return "bool"
	case key == "Http":
		return "host:port|off"
	case key == "DashboardToken":
		return "string"
	case key == "PipeName":
		return "name|path"
	case key == "TlsListen" || key == "PlainTcp":
		return "host:port|off"
	case key == "TlsCert" || key == "TlsKey" || key == "TlsClientCa":
		return "path"
	case key == "Cluster":
		return "off|embedded|external"
	case key == "ClusterReplicas":
		return "int"
	case strings.HasSuffix(key, "Listen"):
		return "host:port"
	case key == "ClusterRoutes" || key == "ClusterUrls":
		return "url,..."
	case strings.HasPrefix(key, "Cluster"):
		return "string"
	case key == "DurableDir":
		return "path"
	case key == "DurableSync":
		return "always|interval"
	}
	return "int"
}
