package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/remote"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/protocol"
)

func init() {
	commands["bench"] = command{summary: "measure throughput and latency with real clients (like nats bench)", run: runBench}
}

const benchAbout = `Measures the bus with real clients, each on its own connection, the way
nats bench measures NATS: publishers send events, subscribers receive them.
One event in 64 carries its send time (the others cost no clock read on
either side), and its receiver records the send-to-receive latency in an
HDR histogram.

Modes:
  unicast    each publisher sends its share of --msgs to the subscribers in
             turn (publisher i's k-th event goes to subscriber (i+k) % subs),
             pipelined (PostEvent: no waiting for acknowledgements). With
             --pairs N: N publishers and N subscribers, publisher i sends
             only to subscriber i (independent pairs, not a mesh).
  broadcast  each publisher sends its share of --msgs to "*": every
             subscriber receives every event (delivered = msgs * subs). The
             bus sends "*" to every other subscribed machine, so with more
             than one publisher the publishers also receive each other's
             events; those are not counted.
  reqrep     --pubs requesters, --subs responders; requester i sends a
             request (Client.Request) to responder i % subs, whose
             HandleRequest handler replies, and waits for the reply before
             sending the next. Latency is every round trip, timed by the
             requester (as nats bench service request does).
  connect    --msgs connections one after another (1,000 unless given):
             each connects and registers (Dial), then closes (Close).
             Latency is each step's; the rate is connections per second.

--msgs is the total number of events published (round trips in reqrep),
split evenly over the publishers. Throughput counts delivered events (MB/s
counts their payload bytes, 10^6 bytes a MB) from the first send to the last
arrival. lost = sent - received must be 0: after the publishers finish, the
command waits for stragglers until nothing arrives for --wait, and exits 1
if any are missing, if the service refused an event, or on --timeout.

Without --rate the publishers send as fast as the bus takes events, so the
latency includes the queues they build. --rate N paces each publisher
(requester) at N events (round trips) per second in batches of a
millisecond's worth, reading the clock once a batch; the first event of each
batch carries the send time, so the latency is the transport's, not a
queue's (if the bus keeps up with the rate).

The payload is a JSON string of --size bytes: "x..." or, when it carries
the send time, "t" and 11 characters of it, then padding; 16 bytes is the
smallest.`

const benchExample = `statebus bench --inproc --pubs 1 --subs 1 --msgs 1000000 --size 128
statebus bench --inproc --pairs 4 --msgs 1000000 --size 16
statebus bench --inproc --rate 50000 --msgs 500000 --framing compact
statebus bench --inproc --transport tls --mode reqrep --msgs 100000
statebus bench --mode broadcast --subs 5 --msgs 200000 --json
statebus bench --mode reqrep --pubs 8 --msgs 100000 --pipe-name /tmp/bus.sock
statebus bench --mode connect --msgs 2000 --pipe-name /tmp/bus.sock
statebus bench --pipe-name /run/a.sock --sub-pipe-name /run/b.sock --msgs 100000
statebus bench --url tls://bus.example.org:9556 --tls-ca ca.pem --tls-cert me.pem --tls-key me-key.pem`

// Bounds on a run, so a typo cannot ask for a week or a gigabyte per client.
const (
	benchMaxClients = 256 // publishers, and subscribers, each
	benchMaxMsgs    = 100_000_000
	benchMaxSize    = 512 << 10 // well under the service's 1 MiB line limit
	benchMaxTimeout = time.Hour
	benchMaxRate    = 100_000_000
	benchConnects   = 1000 // --msgs of --mode connect, unless given
)

type benchConfig struct {
	mode               string
	pubs, subs, size   int
	pairs              int   // --pairs: publisher i sends only to subscriber i; 0: the mesh
	rate               int64 // --rate: events (round trips) per second per publisher; 0: unpaced
	framing            string
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
	fo, err := benchFramingOption(cfg.framing)
	if err != nil {
		fmt.Fprintf(e.stderr, "statebus bench: %v\n", err)
		return 2
	}
	if fo != nil {
		cfg.bus = append(cfg.bus, fo)
	}
	var res benchResult
	var failures []string
	if cfg.mode == "connect" {
		res, failures = benchConnect(ctx, e, cfg)
	} else {
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
		res, failures = benchRun(ctx, e, cfg, pubs, subs)
	}
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
	fs.StringVar(&cfg.mode, "mode", "unicast", "unicast, broadcast, reqrep or connect")
	fs.IntVar(&cfg.pubs, "pubs", 1, "publishers (requesters in reqrep), each on its own connection")
	fs.IntVar(&cfg.subs, "subs", 1, "subscribers (responders in reqrep), each on its own connection")
	fs.IntVar(&cfg.pairs, "pairs", 0, "N independent pairs instead of --pubs and --subs: publisher (requester) i sends only to subscriber (responder) i")
	fs.Int64Var(&cfg.rate, "rate", 0, "events (round trips) per second per publisher (requester), paced in batches of a millisecond's worth; 0: as fast as the bus takes them")
	fs.Int64Var(&cfg.msgs, "msgs", 100_000, fmt.Sprintf("events published in all (round trips in reqrep, connections in connect: %d unless given), split over the publishers", benchConnects))
	fs.IntVar(&cfg.size, "size", 128, fmt.Sprintf("payload bytes per event (at least %d)", benchMinSize))
	fs.StringVar(&cfg.framing, "framing", "", "how the clients frame what they exchange with statebusd: "+benchFramingNames()+" (default: the client library's, compact, which falls back to json where the service does not offer it; json is the .NET clients' lines)")
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
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if msg := benchCheck(&cfg, given); msg != "" {
		return bad("%s", msg)
	}
	if !cfg.inproc {
		cfg.bus = append([]statebus.Option{statebus.WithPipeName(cfg.pipeName)}, cfg.serverUID.options()...)
		cfg.bus = append(cfg.bus, cfg.remote.options()...)
	}
	return cfg, 0, true
}

// benchCheck checks the flags (given: those on the command line), fills
// in what --pairs and --mode connect imply, and returns what is wrong.
func benchCheck(cfg *benchConfig, given map[string]bool) string {
	if cfg.mode == "connect" && !given["msgs"] {
		cfg.msgs = benchConnects
	}
	for _, f := range []string{"pubs", "subs"} {
		if given[f] && given["pairs"] {
			return fmt.Sprintf("--pairs and --%s exclude each other: --pairs N is N publishers and N subscribers", f)
		}
	}
	if cfg.mode == "connect" {
		for _, f := range []string{"pubs", "subs", "pairs", "rate", "size", "sub-pipe-name"} {
			if given[f] {
				return fmt.Sprintf("--mode connect takes no --%s: it times --msgs connections, one after another", f)
			}
		}
	}
	switch {
	case cfg.mode != "unicast" && cfg.mode != "broadcast" && cfg.mode != "reqrep" && cfg.mode != "connect":
		return fmt.Sprintf("--mode must be unicast, broadcast, reqrep or connect, not %q", cfg.mode)
	case cfg.pubs < 1 || cfg.pubs > benchMaxClients:
		return fmt.Sprintf("--pubs must be 1 to %d, not %d", benchMaxClients, cfg.pubs)
	case cfg.subs < 1 || cfg.subs > benchMaxClients:
		return fmt.Sprintf("--subs must be 1 to %d, not %d", benchMaxClients, cfg.subs)
	case given["pairs"] && (cfg.pairs < 1 || cfg.pairs > benchMaxClients):
		return fmt.Sprintf("--pairs must be 1 to %d, not %d", benchMaxClients, cfg.pairs)
	case given["pairs"] && cfg.mode == "broadcast":
		return "--pairs is for unicast and reqrep: in broadcast every subscriber receives every event"
	case cfg.rate < 0 || cfg.rate > benchMaxRate:
		return fmt.Sprintf("--rate must be 0 (unpaced) to %d events per second, not %d", benchMaxRate, cfg.rate)
	case cfg.msgs < 1 || cfg.msgs > benchMaxMsgs:
		return fmt.Sprintf("--msgs must be 1 to %d, not %d", benchMaxMsgs, cfg.msgs)
	case cfg.size < benchMinSize || cfg.size > benchMaxSize:
		return fmt.Sprintf("--size must be %d to %d bytes, not %d", benchMinSize, benchMaxSize, cfg.size)
	case !benchFramingKnown(cfg.framing):
		return fmt.Sprintf("--framing must be %s, not %q", benchFramingNames(), cfg.framing)
	case cfg.timeout <= 0 || cfg.timeout > benchMaxTimeout:
		return fmt.Sprintf("--timeout must be positive and at most %v, not %v", benchMaxTimeout, cfg.timeout)
	case cfg.straggler <= 0 || cfg.straggler > cfg.timeout:
		return fmt.Sprintf("--wait must be positive and at most --timeout, not %v", cfg.straggler)
	case cfg.serverUID.set && cfg.serverUID.uid < 0:
		return fmt.Sprintf("STATEBUS_SERVER_UID=%q is neither a uid nor a user name", cfg.serverUID.text)
	case cfg.transport != "unix" && cfg.transport != "tls" && cfg.transport != "tcp":
		return fmt.Sprintf("--transport must be unix, tls or tcp, not %q", cfg.transport)
	case (given["pipe-name"] || given["url"]) && cfg.inproc:
		if given["pipe-name"] {
			return "--inproc and --pipe-name exclude each other"
		}
		return "--inproc and --url exclude each other"
	case given["sub-pipe-name"] && cfg.inproc:
		return "--inproc and --sub-pipe-name exclude each other"
	case given["transport"] && !cfg.inproc:
		return "--transport is for --inproc; to reach a running statebusd over TLS, give --url"
	}
	if given["pairs"] {
		cfg.pubs, cfg.subs = cfg.pairs, cfg.pairs
	}
	if cfg.mode == "connect" {
		cfg.pubs, cfg.subs = 1, 0
	}
	return ""
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
