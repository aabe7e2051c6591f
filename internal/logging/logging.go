// Package logging builds statebusd's loggers: one per category, each with
// a level that can change while the service runs (SIGHUP), all writing
// through one handler, text for a terminal or JSON for journald and log
// shippers.
//
// Categories are dotted names, as .NET's are. Levels come from the
// configuration's Logging:LogLevel section, whose keys match a category
// and every category under it ("statebus" matches "statebus.server");
// the longest matching key wins and "Default" applies when none matches.
// Each statebus category also answers to the .NET class that had its job
// in the original service, so an unmodified appsettings.json ("XStateNet.
// InterProcess": "Debug") means what it meant there.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// The categories statebusd logs under.
const (
	// Daemon is the service's lifecycle: start, stop, reload, systemd.
	Daemon = "statebus.daemon"
	// Server is the bus: connections, registrations, refusals, health.
	Server = "statebus.server"
	// HTTP is the monitoring endpoint.
	HTTP = "statebus.http"
)

// aliases are the original service's classes that did each category's job.
var aliases = map[string][]string{
	Daemon: {"XStateNet.InterProcess.Service.InterProcessMessageBusWorker"},
	Server: {"XStateNet.InterProcess.Service.NamedPipeMessageBus"},
	HTTP:   {"XStateNet.InterProcess.Service.HealthMonitor"},
}

// Categories lists statebusd's categories.
func Categories() []string { return []string{Daemon, Server, HTTP} }

// ParseLevel accepts slog's level names and .NET's (Trace, Debug,
// Information, Warning, Error, Critical, None). Empty means info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info", "information":
		return slog.LevelInfo, nil
	case "trace", "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "critical", "none":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: use debug, info, warn or error", s)
}

// Levels resolves a Logging:LogLevel section to a level per category.
// Keys that match no category are ignored, as .NET ignores keys for
// classes that do not log; a bad level under any key is an error naming
// the key.
func Levels(section map[string]string) (map[string]slog.Level, error) {
	keys := make([]string, 0, len(section))
	for k := range section {
		keys = append(keys, k)
	}
	slices.Sort(keys) // errors in a stable order
	parsed := make(map[string]slog.Level, len(keys))
	for _, k := range keys {
		l, err := ParseLevel(section[k])
		if err != nil {
			return nil, fmt.Errorf("Logging:LogLevel:%s: %w", k, err)
		}
		parsed[k] = l
	}
	out := make(map[string]slog.Level)
	for _, cat := range Categories() {
		best, lvl := -1, slog.LevelInfo
		if l, ok := parsed["Default"]; ok {
			lvl = l
		}
		for k, l := range parsed {
			if k == "Default" {
				continue
			}
			for _, name := range append([]string{cat}, aliases[cat]...) {
				if matches(k, name) && len(k) > best {
					best, lvl = len(k), l
				}
			}
		}
		out[cat] = lvl
	}
	return out, nil
}

// matches reports whether key names category name or a parent of it.
func matches(key, name string) bool {
	return strings.EqualFold(key, name) ||
		len(name) > len(key) && name[len(key)] == '.' && strings.EqualFold(name[:len(key)], key)
}

// Format is how log records are written.
type Format string

// The formats.
const (
	// Text is slog's key=value lines, for people at a terminal.
	Text Format = "text"
	// JSON is one JSON object a line, for journald and log shippers.
	JSON Format = "json"
)

// Options configure New.
type Options struct {
	// Format is Text or JSON.
	Format Format
	// Levels is each category's level (see Levels); a category without
	// an entry logs at Info.
	Levels map[string]slog.Level
}

// LevelWriter is a destination that wants each record's level as well as
// its bytes: the journal (priority prefixes) or the Windows event log
// (event types). New hands it one whole record per call.
type LevelWriter interface {
	WriteLevel(level slog.Level, p []byte) (int, error)
}

// Logs hands out the category loggers and changes their levels.
type Logs struct {
	base   slog.Handler
	sink   *sink
	mu     sync.Mutex
	levels map[string]*slog.LevelVar
}

// New returns the loggers writing to w. If w is a LevelWriter each record
// reaches it with its level.
func New(w io.Writer, o Options) (*Logs, error) {
	l := &Logs{levels: make(map[string]*slog.LevelVar)}
	var out io.Writer = w
	if lw, ok := w.(LevelWriter); ok {
		l.sink = &sink{lw: lw}
		out = l.sink
	}
	// The category handlers decide what is enabled; the base lets all pass.
	ho := &slog.HandlerOptions{Level: slog.Level(-1 << 10)}
	switch o.Format {
	case Text, "":
		l.base = slog.NewTextHandler(out, ho)
	case JSON:
		l.base = slog.NewJSONHandler(out, ho)
	default:
		return nil, fmt.Errorf("log format must be text or json, not %q", o.Format)
	}
	l.SetLevels(o.Levels)
	return l, nil
}

// Logger returns category's logger. Its records carry the attribute
// category=NAME.
func (l *Logs) Logger(category string) *slog.Logger {
	return slog.New(&handler{
		next:  l.base.WithAttrs([]slog.Attr{slog.String("category", category)}),
		level: l.level(category),
		sink:  l.sink,
	})
}

// SetLevels changes the levels of the categories in levels, at once for
// every logger already handed out. Categories not in levels keep theirs.
func (l *Logs) SetLevels(levels map[string]slog.Level) {
	for cat, lvl := range levels {
		l.level(cat).Set(lvl)
	}
}

// Level returns category's current level.
func (l *Logs) Level(category string) slog.Level { return l.level(category).Level() }

func (l *Logs) level(category string) *slog.LevelVar {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.levels[category]
	if !ok {
		v = new(slog.LevelVar) // Info
		l.levels[category] = v
	}
	return v
}

// handler gates one category by its level.
type handler struct {
	next  slog.Handler
	level *slog.LevelVar
	sink  *sink
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if h.sink == nil {
		return h.next.Handle(ctx, r)
	}
	// slog's handlers write a record in one Write; hold the sink so that
	// Write knows whose level it is writing.
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	h.sink.level = r.Level
	return h.next.Handle(ctx, r)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{next: h.next.WithAttrs(as), level: h.level, sink: h.sink}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), level: h.level, sink: h.sink}
}

// sink passes the level of the record being written to a LevelWriter.
type sink struct {
	mu    sync.Mutex
	lw    LevelWriter
	level slog.Level
}

// Write is called by the base handler with mu held by handler.Handle.
func (s *sink) Write(p []byte) (int, error) { return s.lw.WriteLevel(s.level, p) }
