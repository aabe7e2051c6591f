package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/schollz/progressbar/v3"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/remote"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

func init() {
	commands["bench"] = command{summary: "measure throughput and latency with real clients (like nats bench)", run: runBench}
}

const benchAbout = `Measures the bus with real clients, each on its own connection: publishers
send events, subscribers receive them, and every event carries its send time
so the receiver records send-to-receive latency in an HDR histogram.

Modes:
  unicast    each publisher sends its share of --msgs to the subscribers in
             turn (publisher i's k-th event goes to subscriber (i+k) % subs),
             pipelined (PostEvent: no waiting for acknowledgements).
  broadcast  each publisher sends its share of --msgs to "*": every
             subscriber receives every event (delivered = msgs * subs). The
             bus sends "*" to every other subscribed machine, so with more
             than one publisher the publishers also receive each other's
             events; those are not counted.
  reqrep     --pubs requesters, --subs responders; requester i sends a
             request (Client.Request) to responder i % subs, whose
             HandleRequest handler replies, and waits for the reply before
             sending the next. Latency is the round trip.

--msgs is the total number of events published (round trips in reqrep),
split evenly over the publishers. Throughput counts delivered events (MB/s
counts their payload bytes, 10^6 bytes a MB) from the first send to the last
arrival. lost = sent - received must be 0: after the publishers finish, the
command waits for stragglers until nothing arrives for --wait, and exits 1
if any are missing, if the service refused an event, or on --timeout.`

const benchExample = `statebus bench --inproc --pubs 1 --subs 1 --msgs 1000000 --size 128
statebus bench --inproc --transport tls --mode reqrep --msgs 100000
statebus bench --mode broadcast --subs 5 --msgs 200000 --json
statebus bench --mode reqrep --msgs 100000 --pipe-name /tmp/bus.sock
statebus bench --pipe-name /run/a.sock --sub-pipe-name /run/b.sock --msgs 100000
statebus bench --url tls://bus.example.org:9556 --tls-ca ca.pem --tls-cert me.pem --tls-key me-key.pem`

// Bounds on a run, so a typo cannot ask for a week or a gigabyte per client.
const (
	benchMaxClients = 256 // publishers, and subscribers, each
	benchMaxMsgs    = 100_000_000
	benchMaxSize    = 512 << 10 // well under the service's 1 MiB line limit
	benchMaxTimeout = time.Hour
)

type benchConfig struct {
	mode               string
	pubs, subs, size   int
	msgs               int64
	pipeName           string
	subPipe            string // --sub-pipe-name: the receivers' statebusd
	serverUID          serverUID
	remote             remoteFlags
	transport          string // of --inproc: unix, tls or tcp
	bus                []statebus.Option
	json, inproc       bool
	timeout, straggler time.Duration
}

// benchClient is one connection and what it counted.
type benchClient struct {
	c    *statebus.Client
	role string // "pub" or "sub"
	want int64  // events it should receive

	// mu guards the fields below. Only this client's dispatch goroutine
	// (or, for counts sent, its publishing goroutine) takes it during the
	// run, so it is uncontended until the final merge.
	mu   sync.Mutex
	n    int64 // received (subscribers, requesters) or sent (publishers)
	sent int64
	hist *hdrhistogram.Histogram
	last time.Time // when the last event arrived, or the last send returned
	bad  int64     // events whose payload carried no send time

	refused atomic.Int64 // refusals the service sent
	errMu   sync.Mutex
	err     error // the first refusal or failure
}

func (b *benchClient) fail(err error) {
	b.refused.Add(1)
	b.errMu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.errMu.Unlock()
}

// record counts an event that arrived now with the send time in p.
func (b *benchClient) record(p []byte, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	b.last = now
	if t, ok := benchStampOf(p); ok {
		// Clamp: the histogram tracks 1 ns to its highest value.
		b.hist.RecordValue(min(max(now.UnixNano()-t, 1), b.hist.HighestTrackableValue()))
	} else {
		b.bad++
	}
}

func (b *benchClient) count() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func runBench(ctx context.Context, e *env, args []string) int {
	cfg, code, ok := benchParse(e, args)
	if !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if cfg.inproc {
		srv, err := benchStartServer(cfg.pubs+cfg.subs, cfg.transport)
		if err != nil {
			fmt.Fprintf(e.stderr, "statebus bench: cannot start an in-process statebusd: %v\n", err)
			return 1
		}
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
			srv.cleanup()
		}()
		cfg.bus = srv.bus
	}
	pubs, subs, err := benchDial(ctx, cfg)
	defer func() {
		for _, b := range append(pubs, subs...) {
			b.c.Close()
		}
	}()
	if err != nil {
		fmt.Fprintf(e.stderr, "statebus bench: %v\n", err)
		return 1
	}
	res, failures := benchRun(ctx, e, cfg, pubs, subs)
	interrupted := errors.Is(context.Cause(ctx), context.Canceled)
	if interrupted {
		res.Interrupted, res.InFlight, res.Lost = true, res.Lost, 0
	}
	if cfg.json {
		benchWriteJSON(e.stdout, res)
	} else {
		benchReport(e.stdout, cfg, res)
	}
	switch {
	case interrupted:
		failures = append(failures, "interrupted")
	case ctx.Err() != nil:
		failures = append(failures, fmt.Sprintf("stopped: %v (--timeout %v)", context.Cause(ctx), cfg.timeout))
	}
	for _, f := range failures {
		fmt.Fprintf(e.stderr, "statebus bench: %s\n", f)
	}
	switch {
	case interrupted:
		return exitInterrupted
	case len(failures) > 0 || res.Lost != 0:
		return 1
	}
	return 0
}

// exitInterrupted is the exit code of a command stopped by Ctrl-C
// (SIGINT), as a shell reports it: 128 + 2.
const exitInterrupted = 130

func benchParse(e *env, args []string) (cfg benchConfig, code int, ok bool) {
	fs := flag.NewFlagSet("statebus bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pipe := e.getenv("STATEBUS_PIPE_NAME")
	if pipe == "" {
		pipe = protocol.DefaultPipeName
	}
	fs.StringVar(&cfg.pipeName, "pipe-name", pipe, "pipe name or absolute socket path of statebusd (env STATEBUS_PIPE_NAME)")
	cfg.serverUID.define(fs, e)
	cfg.remote.define(fs, e)
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object instead of text")
	fs.StringVar(&cfg.mode, "mode", "unicast", "unicast, broadcast or reqrep")
	fs.IntVar(&cfg.pubs, "pubs", 1, "publishers (requesters in reqrep), each on its own connection")
	fs.IntVar(&cfg.subs, "subs", 1, "subscribers (responders in reqrep), each on its own connection")
	fs.Int64Var(&cfg.msgs, "msgs", 100_000, "events published in all (round trips in reqrep), split over the publishers")
	fs.IntVar(&cfg.size, "size", 128, fmt.Sprintf("payload bytes per event (at least %d: the send time)", benchMinSize))
	fs.StringVar(&cfg.subPipe, "sub-pipe-name", "", "subscribers (responders in reqrep) connect to this statebusd instead: with a federation (Cluster) of two daemons, measures events and round trips across daemons")
	fs.BoolVar(&cfg.inproc, "inproc", false, "start a statebusd in this process on a temporary socket (no daemon needed)")
	fs.StringVar(&cfg.transport, "transport", "unix", "with --inproc, what the clients connect over: unix, tls (mutual TLS on 127.0.0.1, with certificates made for the run) or tcp (plain TCP on 127.0.0.1)")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "give up after this long, connecting included")
	fs.DurationVar(&cfg.straggler, "wait", 5*time.Second, "once the publishers are done, how long to wait for missing events while none arrive")
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: statebus bench [flags]\n\n%s\n\nExample:\n", benchAbout)
		for _, l := range strings.Split(benchExample, "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	bad := func(format string, a ...any) (benchConfig, int, bool) {
		fmt.Fprintf(e.stderr, "statebus bench: %s\nRun 'statebus bench --help' for usage.\n", fmt.Sprintf(format, a...))
		return cfg, 2, false
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(e.stdout)
		return cfg, 0, false
	case err != nil:
		return bad("%v", err)
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case cfg.mode != "unicast" && cfg.mode != "broadcast" && cfg.mode != "reqrep":
		return bad("--mode must be unicast, broadcast or reqrep, not %q", cfg.mode)
	case cfg.pubs < 1 || cfg.pubs > benchMaxClients:
		return bad("--pubs must be 1 to %d, not %d", benchMaxClients, cfg.pubs)
	case cfg.subs < 1 || cfg.subs > benchMaxClients:
		return bad("--subs must be 1 to %d, not %d", benchMaxClients, cfg.subs)
	case cfg.msgs < 1 || cfg.msgs > benchMaxMsgs:
		return bad("--msgs must be 1 to %d, not %d", benchMaxMsgs, cfg.msgs)
	case cfg.size < benchMinSize || cfg.size > benchMaxSize:
		return bad("--size must be %d to %d bytes, not %d", benchMinSize, benchMaxSize, cfg.size)
	case cfg.timeout <= 0 || cfg.timeout > benchMaxTimeout:
		return bad("--timeout must be positive and at most %v, not %v", benchMaxTimeout, cfg.timeout)
	case cfg.straggler <= 0 || cfg.straggler > cfg.timeout:
		return bad("--wait must be positive and at most --timeout, not %v", cfg.straggler)
	case cfg.serverUID.set && cfg.serverUID.uid < 0:
		return bad("STATEBUS_SERVER_UID=%q is neither a uid nor a user name", cfg.serverUID.text)
	case cfg.transport != "unix" && cfg.transport != "tls" && cfg.transport != "tcp":
		return bad("--transport must be unix, tls or tcp, not %q", cfg.transport)
	}
	fs.Visit(func(f *flag.Flag) {
		switch {
		case (f.Name == "pipe-name" || f.Name == "url") && cfg.inproc:
			err = fmt.Errorf("--inproc and --%s exclude each other", f.Name)
		case f.Name == "sub-pipe-name" && cfg.inproc:
			err = errors.New("--inproc and --sub-pipe-name exclude each other")
		case f.Name == "transport" && !cfg.inproc:
			err = errors.New("--transport is for --inproc; to reach a running statebusd over TLS, give --url")
		}
	})
	if err != nil {
		return bad("%v", err)
	}
	if !cfg.inproc {
		cfg.bus = append([]statebus.Option{statebus.WithPipeName(cfg.pipeName)}, cfg.serverUID.options()...)
		cfg.bus = append(cfg.bus, cfg.remote.options()...)
	}
	return cfg, 0, true
}

// benchServer is the statebusd of --inproc, with the client options that
// reach it over the chosen transport.
type benchServer struct {
	*server.Server
	cleanup func() // removes the certificates' directory and what the socket left
	bus     []statebus.Option
}

// benchStartServer runs a statebusd in this process on a fresh socket (a
// named pipe on Windows), serving transport ("tls": mutual TLS on
// 127.0.0.1, with a CA and certificates made for the run; "tcp": plain
// TCP on 127.0.0.1) as well.
func benchStartServer(clients int, transport string) (*benchServer, error) {
	dir, err := os.MkdirTemp("", "sbb")
	if err != nil {
		return nil, err
	}
	addr, removeAddr, err := busaddr.Temp()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cleanup := func() { removeAddr(); os.RemoveAll(dir) }
	cfg := server.DefaultConfig()
	cfg.SocketPath = addr
	cfg.MaxConnections = clients + 16
	cfg.HealthCheckInterval = 0
	var certs benchCerts
	switch transport {
	case "tls":
		cfg.TLS.Listen = "127.0.0.1:0"
		if certs, err = benchMakeCerts(dir); err != nil {
			cleanup()
			return nil, err
		}
		cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA = certs.server, certs.serverKey, certs.ca
	case "tcp":
		cfg.PlainTCP = "127.0.0.1:0"
	}
	srv, err := server.New(cfg)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		cleanup()
		return nil, err
	}
	b := &benchServer{Server: srv, cleanup: cleanup, bus: []statebus.Option{statebus.WithPipeName(srv.Addr())}}
	switch transport {
	case "tls":
		b.bus = append(b.bus, statebus.WithURL("tls://"+srv.TLSAddr().String()), statebus.WithTLSFiles(certs.ca, certs.client, certs.clientKey))
	case "tcp":
		b.bus = append(b.bus, statebus.WithURL("tcp://"+srv.PlainTCPAddr().String()))
	}
	return b, nil
}

// benchCerts are the files of the certificates a --transport tls run
// makes.
type benchCerts struct {
	ca, server, serverKey, client, clientKey string
}

// benchMakeCerts makes a CA, a server certificate for 127.0.0.1 and a
// client certificate in dir.
func benchMakeCerts(dir string) (benchCerts, error) {
	ca, err := remote.NewCA("statebus bench CA", 24*time.Hour)
	if err != nil {
		return benchCerts{}, err
	}
	c := benchCerts{ca: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(c.ca, ca.CertPEM(), 0o600); err != nil {
		return c, err
	}
	for _, r := range []struct {
		req       remote.Request
		cert, key *string
	}{
		{remote.Request{CommonName: "statebusd", Hosts: []string{"127.0.0.1"}, Usage: x509.ExtKeyUsageServerAuth}, &c.server, &c.serverKey},
		{remote.Request{CommonName: "statebus-bench", Usage: x509.ExtKeyUsageClientAuth}, &c.client, &c.clientKey},
	} {
		cert, key, err := ca.Issue(r.req)
		if err != nil {
			return c, err
		}
		*r.cert, *r.key = filepath.Join(dir, r.req.CommonName+".pem"), filepath.Join(dir, r.req.CommonName+"-key.pem")
		if err := os.WriteFile(*r.cert, cert, 0o600); err != nil {
			return c, err
		}
		if err := os.WriteFile(*r.key, key, 0o600); err != nil {
			return c, err
		}
	}
	return c, nil
}

// benchShare is publisher i's share of msgs.
func benchShare(msgs int64, pubs, i int) int64 {
	n := msgs / int64(pubs)
	if int64(i) < msgs%int64(pubs) {
		n++
	}
	return n
}

// benchUnicastWant is how many events subscriber j receives in unicast,
// where publisher i's k-th event goes to subscriber (i+k) % subs.
func benchUnicastWant(msgs int64, pubs, subs, j int) int64 {
	var want int64
	for i := range pubs {
		c := benchShare(msgs, pubs, i)
		want += c / int64(subs)
		// The first c % subs events go to subscribers i, i+1, ...
		if off := (j - i%subs + subs) % subs; int64(off) < c%int64(subs) {
			want++
		}
	}
	return want
}

// benchDial connects the publishers and the subscribers; with an error,
// the clients connected so far are returned for closing.
func benchDial(ctx context.Context, cfg benchConfig) (pubs, subs []*benchClient, err error) {
	run := fmt.Sprintf("bench-%d-%04x", os.Getpid(), rand.IntN(1<<16))
	dial := func(role string, i int, want int64) (*benchClient, error) {
		b := &benchClient{role: role, want: want}
		if (role == "sub") != (cfg.mode == "reqrep") { // a receiver
			b.hist = benchHistogram()
		}
		bus := cfg.bus
		if role == "sub" && cfg.subPipe != "" {
			bus = append(slices.Clip(bus), statebus.WithPipeName(cfg.subPipe))
		}
		c, err := statebus.Dial(ctx, fmt.Sprintf("%s-%s-%d", run, role, i), append(slices.Clip(bus),
			statebus.WithProcessName("statebus bench"),
			statebus.WithErrorHandler(b.fail),
			// A run measures one connection per client: a reconnection
			// in the middle would hide the loss behind a pause.
			statebus.WithReconnect(false))...)
		if err != nil {
			return nil, err
		}
		b.c = c
		return b, nil
	}
	for j := range cfg.subs {
		var want int64
		switch cfg.mode {
		case "unicast":
			want = benchUnicastWant(cfg.msgs, cfg.pubs, cfg.subs, j)
		case "broadcast":
			want = cfg.msgs
		}
		b, err := dial("sub", j, want)
		if err != nil {
			return pubs, subs, err
		}
		subs = append(subs, b)
	}
	for i := range cfg.pubs {
		var want int64
		if cfg.mode == "reqrep" {
			want = benchShare(cfg.msgs, cfg.pubs, i)
		}
		b, err := dial("pub", i, want)
		if err != nil {
			return pubs, subs, err
		}
		pubs = append(pubs, b)
	}
	return pubs, subs, nil
}

// benchRun runs the workload on connected clients and measures it. It
// returns the result and what went wrong besides lost events.
func benchRun(ctx context.Context, e *env, cfg benchConfig, pubs, subs []*benchClient) (benchResult, []string) {
	receivers := subs
	if cfg.mode == "reqrep" {
		receivers = pubs
		for _, s := range subs {
			s.c.HandleRequest("REQ", func(_ context.Context, ev statebus.Event) (any, error) {
				s.mu.Lock()
				s.n++
				s.last = time.Now()
				s.mu.Unlock()
				return ev.Payload, nil // the reply carries the send time back
			})
		}
	} else {
		for _, s := range subs {
			s.c.OnEvent("BENCH", func(ev statebus.Event) { s.record(ev.Payload, time.Now()) })
		}
	}
	var total int64
	for _, r := range receivers {
		total += r.want
	}

	var bar *progressbar.ProgressBar
	if e.tty && !cfg.json {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(e.stdout),
			progressbar.OptionSetDescription(cfg.mode), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("msgs"),
			progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}

	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if cfg.mode == "reqrep" {
				err = benchRequest(ctx, cfg, p, subs[i%len(subs)].c.ID())
			} else {
				err = benchPublish(ctx, cfg, p, i, subs)
			}
			if err != nil && ctx.Err() == nil {
				p.fail(err)
			}
		}()
	}
	pubsDone := make(chan struct{})
	go func() { wg.Wait(); close(pubsDone) }()
	benchWait(ctx, cfg, receivers, total, pubsDone, bar)
	<-pubsDone // publishers return at once when ctx ends
	if errors.Is(context.Cause(ctx), context.Canceled) {
		// Interrupted: give what is in flight a moment to arrive, so it
		// is counted as delivered, not as missing.
		wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
		drain := cfg
		drain.straggler = min(cfg.straggler, 200*time.Millisecond)
		benchWait(wctx, drain, receivers, benchSentTotal(cfg, pubs), pubsDone, bar)
		wcancel()
	}
	if bar != nil {
		bar.Clear()
	}

	// Stop the clients so no handler runs during the merge.
	for _, b := range append(subs, pubs...) {
		b.c.Close()
	}
	return benchSummarize(cfg, start, pubs, subs, receivers)
}

// benchSentTotal is how many events the receivers should have for what
// the publishers sent (requests, in reqrep).
func benchSentTotal(cfg benchConfig, pubs []*benchClient) int64 {
	var sent int64
	for _, p := range pubs {
		p.mu.Lock()
		sent += p.sent
		p.mu.Unlock()
	}
	if cfg.mode == "broadcast" {
		sent *= int64(cfg.subs)
	}
	return sent
}

// benchPublish sends publisher i's share, pipelined.
func benchPublish(ctx context.Context, cfg benchConfig, p *benchClient, i int, subs []*benchClient) error {
	buf := benchPayload(cfg.size)
	var payload any = json.RawMessage(buf) // stamped in place: no allocation per event
	n := benchShare(cfg.msgs, cfg.pubs, i)
	var sent int64
	defer func() {
		p.mu.Lock()
		p.sent, p.last = sent, time.Now()
		p.mu.Unlock()
	}()
	for ; sent < n; sent++ {
		target := "*"
		if cfg.mode == "unicast" {
			target = subs[(int64(i)+sent)%int64(len(subs))].c.ID()
		}
		benchStamp(buf, time.Now())
		if err := p.c.PostEvent(ctx, target, "BENCH", payload); err != nil {
			if !errors.Is(err, statebus.ErrTooLarge) {
				return err
			}
			p.fail(err) // refused before it was written: lost, as if the service had refused it
		}
	}
	return nil
}

// benchRequest does requester p's round trips (Request / HandleRequest)
// one at a time. A reply that does not come within --wait ends them.
func benchRequest(ctx context.Context, cfg benchConfig, p *benchClient, responder string) error {
	buf := benchPayload(cfg.size)
	for range p.want {
		benchStamp(buf, time.Now())
		p.mu.Lock()
		p.sent++
		p.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, cfg.straggler)
		rep, err := p.c.Request(rctx, responder, "REQ", json.RawMessage(buf))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("request to %s: %w", responder, err)
		}
		p.record(rep.Payload, time.Now())
	}
	return nil
}

// benchWait returns when every receiver has its events, when ctx ends, or
// when the publishers are done and nothing arrived for --wait.
func benchWait(ctx context.Context, cfg benchConfig, receivers []*benchClient, total int64, pubsDone <-chan struct{}, bar *progressbar.ProgressBar) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var prev int64
	lastChange := time.Now()
	for {
		var got int64
		for _, r := range receivers {
			got += r.count()
		}
		if bar != nil {
			bar.Set64(got)
		}
		if got >= total {
			return
		}
		now := time.Now()
		if got != prev {
			prev, lastChange = got, now
		}
		select {
		case <-pubsDone:
			if cfg.mode == "reqrep" || now.Sub(lastChange) >= cfg.straggler {
				return
			}
		default:
			lastChange = now // the publishers' own pace is not a stall
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
