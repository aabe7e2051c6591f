// Package selftest holds the seed's test-client scenarios (ping-pong, the
// multi-client broadcast, the stress run) and the standalone self-test
// that runs them, and checks of its own, against a bus it starts
// in-process on a temporary socket.
package selftest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

// Options configures Run. The zero value runs the full self-test.
type Options struct {
	// Messages is how many events the stress check sends (default 10,000).
	Messages int
	// Timeout bounds each check (default 30s).
	Timeout time.Duration
	// Color marks lines with ANSI colours: only for a terminal.
	Color bool
	// JSON prints one JSON document (a Report) instead of lines.
	JSON bool
}

// Check is the outcome of one check.
type Check struct {
	Name    string  `json:"name"`
	OK      bool    `json:"ok"`
	Detail  string  `json:"detail"`
	Seconds float64 `json:"seconds"`
}

// Report is the self-test's outcome, as --json prints it.
type Report struct {
	OK     bool    `json:"ok"`
	Passed int     `json:"passed"`
	Total  int     `json:"total"`
	Socket string  `json:"socket"`
	Checks []Check `json:"checks"`
}

// Run starts a bus on a temporary socket (a named pipe on Windows), runs
// every check against it with real clients, prints a ✓/✗ line per check
// and a summary to w (or one JSON Report), shuts the bus down and removes
// the socket's directory. It reports whether every check passed.
func Run(ctx context.Context, w io.Writer, opts Options) bool {
	if opts.Messages <= 0 {
		opts.Messages = 10_000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	s := &suite{opts: opts}
	defer s.cleanup()
	checks := s.checks()
	rep := Report{Total: len(checks)}
	if !opts.JSON {
		fmt.Fprintln(w, "statebus self-test: starting a bus in-process on a temporary socket")
	}
	for _, c := range checks {
		cctx, cancel := context.WithTimeoutCause(ctx, opts.Timeout,
			fmt.Errorf("%s took longer than %v", c.name, opts.Timeout))
		start := time.Now()
		detail, err := c.run(cctx)
		cancel()
		res := Check{Name: c.name, OK: err == nil, Detail: detail, Seconds: time.Since(start).Seconds()}
		if err != nil {
			res.Detail = err.Error()
		}
		if res.OK {
			rep.Passed++
		}
		rep.Checks = append(rep.Checks, res)
		if !opts.JSON {
			fmt.Fprintf(w, "%s %s: %s\n", mark(res.OK, opts.Color), res.Name, res.Detail)
		}
	}
	rep.OK = rep.Passed == rep.Total
	rep.Socket = s.socket
	if opts.JSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(w, "%s\n", b)
	} else {
		fmt.Fprintf(w, "%s %d/%d checks passed\n", mark(rep.OK, opts.Color), rep.Passed, rep.Total)
	}
	return rep.OK
}

func mark(ok, color bool) string {
	switch {
	case ok && color:
		return "\x1b[32m✓\x1b[0m"
	case ok:
		return "✓"
	case color:
		return "\x1b[31m✗\x1b[0m"
	}
	return "✗"
}

// errNoBus is what checks that need the bus say when it did not start.
var errNoBus = errors.New("skipped: the bus did not start")

// suite is the state the checks share: the bus and two clients, a and b,
// that live from registration to the error-text checks.
type suite struct {
	opts         Options
	socket       string
	removeSocket func() // what busaddr.Temp left behind
	srv          *server.Server
	bus          []statebus.Option
	a, b         *statebus.Client
}

type check struct {
	name string
	run  func(ctx context.Context) (string, error)
}

func (s *suite) checks() []check {
	return []check{
		{"bus starts", s.start},
		{"registration", s.registration},
		{"subscription", s.subscription},
		{"routing", s.routing},
		{"error text: target not connected", s.errTarget},
		{"error text: id in use", s.errIDInUse},
		{"ping-pong", s.pingPong},
		{"broadcast (5 clients)", s.broadcast},
		{`broadcast to "*"`, s.broadcastStar},
		{fmt.Sprintf("stress (%s events)", commas(int64(s.opts.Messages))), s.stress},
		{"health connection count", s.health},
		{"shutdown", s.shutdown},
	}
}

func (s *suite) start(ctx context.Context) (string, error) {
	socket, cleanup, err := busaddr.Temp()
	if err != nil {
		return "", fmt.Errorf("cannot make a temporary %s: %w", busaddr.Noun, err)
	}
	s.socket, s.removeSocket = socket, cleanup
	cfg := server.DefaultConfig()
	cfg.SocketPath = s.socket
	cfg.SocketMode = 0o600
	cfg.HealthCheckInterval = 0
	srv, err := server.New(cfg)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		return "", fmt.Errorf("cannot start a bus on %s: %w", s.socket, err)
	}
	s.srv = srv
	s.bus = []statebus.Option{statebus.WithPipeName(s.socket), statebus.WithReconnect(false)}
	return "listening on " + s.socket, nil
}

func (s *suite) registration(ctx context.Context) (string, error) {
	if s.srv == nil {
		return "", errNoBus
	}
	var err error
	if s.a, err = statebus.Dial(ctx, uniqueID("st-a"), s.bus...); err != nil {
		return "", err
	}
	if s.b, err = statebus.Dial(ctx, uniqueID("st-b"), s.bus...); err != nil {
		return "", err
	}
	ms, err := statebus.Machines(ctx, s.bus...)
	if err != nil {
		return "", err
	}
	for _, id := range []string{s.a.ID(), s.b.ID()} {
		i := slices.IndexFunc(ms, func(m statebus.MachineInfo) bool { return m.MachineID == id })
		if i < 0 {
			return "", fmt.Errorf("%s registered but is not in the registry", id)
		}
		if got := ms[i].ProcessID; got != int64(os.Getpid()) {
			return "", fmt.Errorf("%s is registered with pid %d, want %d", id, got, os.Getpid())
		}
	}
	return fmt.Sprintf("%s and %s are in the registry (%d machines)", s.a.ID(), s.b.ID(), len(ms)), nil
}

func (s *suite) subscription(ctx context.Context) (string, error) {
	if s.a == nil || s.b == nil {
		return "", errors.New("skipped: registration failed")
	}
	ms, err := statebus.Machines(ctx, s.bus...)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if (m.MachineID == s.a.ID() || m.MachineID == s.b.ID()) && !m.Subscribed {
			return "", fmt.Errorf("%s is registered but not subscribed", m.MachineID)
		}
	}
	return "both machines are subscribed", nil
}

func (s *suite) routing(ctx context.Context) (string, error) {
	if s.a == nil || s.b == nil {
		return "", errors.New("skipped: registration failed")
	}
	got := make(chan statebus.Event, 1)
	defer s.b.OnEvent("HELLO", func(ev statebus.Event) {
		select {
		case got <- ev:
		default:
		}
	})()
	const payload = `{"Message":"Hello","N":[1,2.5,null,true]}`
	if err := s.a.SendEvent(ctx, s.b.ID(), "HELLO", json.RawMessage(payload)); err != nil {
		return "", err
	}
	select {
	case ev := <-got:
		switch {
		case ev.Source != s.a.ID() || ev.Target != s.b.ID():
			return "", fmt.Errorf("HELLO arrived as from %q to %q, want from %q to %q", ev.Source, ev.Target, s.a.ID(), s.b.ID())
		case string(ev.Payload) != payload:
			return "", fmt.Errorf("payload arrived as %s, want %s", ev.Payload, payload)
		case ev.Timestamp.IsZero():
			return "", errors.New("HELLO arrived without its timestamp")
		}
		return "HELLO from " + s.a.ID() + " reached " + s.b.ID() + " with its payload byte for byte", nil
	case <-ctx.Done():
		return "", fmt.Errorf("HELLO was acknowledged but never arrived: %w", context.Cause(ctx))
	}
}

func (s *suite) errTarget(ctx context.Context) (string, error) {
	if s.a == nil {
		return "", errors.New("skipped: registration failed")
	}
	missing := uniqueID("st-missing")
	err := s.a.SendEvent(ctx, missing, "PING", nil)
	return wantText(err, statebus.ErrTargetNotConnected, "Target machine not connected: "+missing)
}

func (s *suite) errIDInUse(ctx context.Context) (string, error) {
	if s.a == nil {
		return "", errors.New("skipped: registration failed")
	}
	c, err := statebus.Dial(ctx, s.a.ID(), s.bus...)
	if err == nil {
		c.Close()
	}
	return wantText(err, statebus.ErrIDInUse, "Machine id already in use: "+s.a.ID())
}

// wantText checks that err is of kind and carries text exactly as the
// wire said it.
func wantText(err, kind error, text string) (string, error) {
	var pe *protocol.Error
	switch {
	case err == nil:
		return "", fmt.Errorf("no error, want %q", text)
	case !errors.Is(err, kind) || !errors.As(err, &pe):
		return "", fmt.Errorf("got %q, want %q", err, text)
	case pe.Text != text:
		return "", fmt.Errorf("wire text %q, want %q", pe.Text, text)
	}
	return fmt.Sprintf("%q", text), nil
}

func (s *suite) pingPong(ctx context.Context) (string, error) {
	// a and b are done with: close them so the counts below start clean.
	for _, c := range []*statebus.Client{s.a, s.b} {
		if c != nil {
			c.Close()
		}
	}
	if s.srv == nil {
		return "", errNoBus
	}
	r := PingPong(ctx, 5, s.bus...)
	detail := fmt.Sprintf("received %d/%d PONGs", r.Pongs, r.Sent)
	if !r.OK() {
		return "", fmt.Errorf("%s; %s", detail, strings.Join(r.Errors, "; "))
	}
	return detail + ", clean shutdown", nil
}

func (s *suite) broadcast(ctx context.Context) (string, error) {
	if s.srv == nil {
		return "", errNoBus
	}
	r := Broadcast(ctx, 5, s.bus...)
	detail := fmt.Sprintf("%d/%d messages delivered", r.Delivered, r.Expected)
	if !r.OK() {
		for i, n := range r.Received {
			if n != r.Want {
				detail += fmt.Sprintf("; %s received %d/%d", r.Clients[i], n, r.Want)
			}
		}
		return "", fmt.Errorf("%s; %s", detail, strings.Join(r.Errors, "; "))
	}
	return detail, nil
}

// broadcastStar checks statebus's broadcast address: one event to "*"
// reaches every other subscribed machine.
func (s *suite) broadcastStar(ctx context.Context) (string, error) {
	if s.srv == nil {
		return "", errNoBus
	}
	const n = 5
	got := make(chan string, n)
	var clients []*statebus.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range n {
		c, err := statebus.Dial(ctx, uniqueID("st-star"), s.bus...)
		if err != nil {
			return "", err
		}
		c.OnEvent("ANNOUNCE", func(statebus.Event) {
			select {
			case got <- c.ID():
			default:
			}
		})
		clients = append(clients, c)
	}
	if err := clients[0].SendEvent(ctx, protocol.Broadcast, "ANNOUNCE", nil); err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for len(seen) < n-1 {
		select {
		case id := <-got:
			if id == clients[0].ID() {
				return "", errors.New("the sender received its own broadcast")
			}
			seen[id] = true
		case <-ctx.Done():
			return "", fmt.Errorf("reached %d/%d other machines: %w", len(seen), n-1, context.Cause(ctx))
		}
	}
	return fmt.Sprintf("reached %d/%d other machines", len(seen), n-1), nil
}

func (s *suite) stress(ctx context.Context) (string, error) {
	if s.srv == nil {
		return "", errNoBus
	}
	r := Stress(ctx, s.opts.Messages, s.bus...)
	detail := fmt.Sprintf("%s/%s delivered in order in %v (%s msg/sec, p99 %v)",
		commas(int64(r.Received)), commas(int64(r.Sent)), r.Elapsed.Round(time.Millisecond),
		commas(int64(r.Throughput())), r.Percentile(99).Round(time.Microsecond))
	if !r.OK() || r.Sent != s.opts.Messages {
		return "", fmt.Errorf("%s/%s delivered: %s", commas(int64(r.Received)), commas(int64(s.opts.Messages)), strings.Join(r.Errors, "; "))
	}
	return detail, nil
}

// health checks that the service counts connections as they come and go,
// and answers the Health request.
func (s *suite) health(ctx context.Context) (string, error) {
	if s.srv == nil {
		return "", errNoBus
	}
	count := func() int { return s.srv.Health().ConnectionCount }
	// Earlier checks' clients are closed; the service notices at once,
	// but on its own goroutines.
	if err := waitFor(ctx, func() bool { return count() == 0 }); err != nil {
		return "", fmt.Errorf("%d connections remain after every client closed: %w", count(), err)
	}
	const n = 3
	var clients []*statebus.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range n {
		c, err := statebus.Dial(ctx, uniqueID("st-health"), s.bus...)
		if err != nil {
			return "", err
		}
		clients = append(clients, c)
	}
	if err := waitFor(ctx, func() bool { return count() == n }); err != nil {
		return "", fmt.Errorf("the connection count is %d with %d clients connected: %w", count(), n, err)
	}
	h, err := statebus.Health(ctx, s.bus...)
	if err != nil {
		return "", fmt.Errorf("health request: %w", err)
	}
	if !h.IsHealthy || h.ConnectionCount != n+1 || h.RegisteredMachines != n {
		return "", fmt.Errorf("the health request says healthy=%v, %d connections, %d machines; want healthy, %d connections (the request's own included), %d machines",
			h.IsHealthy, h.ConnectionCount, h.RegisteredMachines, n+1, n)
	}
	for _, c := range clients {
		c.Close()
	}
	clients = nil
	if err := waitFor(ctx, func() bool { return count() == 0 }); err != nil {
		return "", fmt.Errorf("the connection count stays at %d after the clients closed: %w", count(), err)
	}
	return fmt.Sprintf("ConnectionCount 0 -> %d -> 0; Health request reports healthy", n), nil
}

func (s *suite) shutdown(ctx context.Context) (string, error) {
	if s.srv == nil {
		return "", errNoBus
	}
	srv := s.srv
	s.srv = nil
	if err := srv.Shutdown(ctx); err != nil {
		return "", fmt.Errorf("shutdown: %w", err)
	}
	if srv.Health().IsHealthy {
		return "", errors.New("the bus still reports healthy after Shutdown")
	}
	if !busaddr.Gone(s.socket) {
		return "", fmt.Errorf("%s %s still exists after Shutdown", busaddr.Noun, s.socket)
	}
	return "bus stopped and " + busaddr.Noun + " removed", nil
}

// cleanup releases whatever the checks left behind, even when one failed
// half-way.
func (s *suite) cleanup() {
	for _, c := range []*statebus.Client{s.a, s.b} {
		if c != nil {
			c.Close()
		}
	}
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.srv.Shutdown(ctx)
		cancel()
	}
	if s.removeSocket != nil {
		s.removeSocket()
	}
}

// waitFor polls cond, backing off to every 20ms, until it holds or ctx
// ends.
func waitFor(ctx context.Context, cond func() bool) error {
	for d := time.Millisecond; !cond(); d = min(2*d, 20*time.Millisecond) {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
	return nil
}

// commas formats n with thousands separators: 10,000.
func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
