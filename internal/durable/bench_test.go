package durable_test

import (
	"bufio"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/fedtest"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/testdir"
)

// BenchmarkDurableUnicast: one sender pipelines events to a durable id
// whose receiver is connected and acknowledges; reports stored events/s
// and the time from writing an event to reading its "Stored"
// acknowledgement (p50, p99), for each sync policy.
func BenchmarkDurableUnicast(b *testing.B) {
	for _, pol := range []durable.SyncPolicy{durable.SyncAlways, durable.SyncInterval} {
		b.Run(string(pol), func(b *testing.B) {
			srv := startDurableB(b, func(c *server.Config) { c.Durable.Store.Sync = pol })
			recv := dialB(b, srv.Addr(), "ctl", true)
			send := dialB(b, srv.Addr(), "src", false)
			pipelined(b, "src", send, recv, srv.Durable().Counters())
		})
	}
}

// BenchmarkDurableAcrossDaemons: BenchmarkDurableUnicast in a federation
// of three daemons (in-process, embedded NATS nodes routed on 127.0.0.1,
// R3 streams, every write flushed: DurableSync always): the sender on
// n1, the receiver on n2 ("across") or on n1 too ("same"); "one": to
// the receiver on n2, one event at a time (BenchmarkDurableOneAtATime).
func BenchmarkDurableAcrossDaemons(b *testing.B) {
	ds := fedtest.Start(b, 3, func(fc *federation.Config) { fc.SyncAlways = true }, func(c *server.Config) {
		c.Durable.Store = durable.DefaultConfig(bustest.TempDir(b))
		c.Durable.Store.Retention.MaxEvents = 10_000_000
		c.Durable.Store.Retention.MaxBytes = 4 << 30
	})
	run := 0
	for _, where := range []string{"same", "across", "one"} {
		b.Run(where, func(b *testing.B) {
			to := ds[1]
			if where == "same" {
				to = ds[0]
			}
			// Ids of their own each time b.Run runs this (with b.N 1
			// first): a released id is free in the federation a moment
			// after its connection closed.
			run++
			id, src := "ctl-"+where+strconv.Itoa(run), "src-"+where+strconv.Itoa(run)
			recv := dialB(b, to.Sock, id, true)
			bustest.Eventually(b, 10*time.Second, func() bool { return ds[0].Srv.Durable().Lookup([]byte(id)) != nil }, "n1 never saw %s declared", id)
			send := dialB(b, ds[0].Sock, src, false)
			if where == "one" {
				oneAtATime(b, src, id, send)
				return
			}
			pipelined(b, src, send, recv, ds[0].Srv.Durable().Counters())
		})
	}
}

// pipelined runs one pipelining sender src (b.N events of 170 bytes) to the
// durable receiver on recv, which acknowledges every 100th, and reports
// stored events/s, events per round of the sender's store (ctr) and the
// time to the "Stored" acknowledgement.
func pipelined(b *testing.B, src string, send, recv net.Conn, ctr *durable.Counters) {
	target := ""
	sc := bufio.NewScanner(recv)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		b.Fatal("the receiver's connection broke")
	}
	target = sc.Text() // its id, sent by dialB
	payload := strings.Repeat("x", 100)
	line := []byte(`{"Type":2,"Payload":{"SourceMachineId":"` + src + `","TargetMachineId":"` + target + `","EventName":"E","Payload":"` + payload + `"}}` + "\n")
	go func() { // the receiver acknowledges every 100th
		n := 0
		for sc.Scan() {
			if n++; n%100 == 0 {
				l := sc.Text()
				i := strings.LastIndex(l, `"Sequence":`)
				seq := strings.TrimSuffix(l[i+len(`"Sequence":`):], "}")
				recv.Write([]byte(`{"Type":108,"Payload":{"MachineId":"` + target + `","Sequence":` + seq + `}}` + "\n"))
			}
		}
	}()
	sent := make([]time.Time, b.N)
	lat := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(send)
		for i := 0; i < b.N && sc.Scan(); i++ {
			if !strings.Contains(sc.Text(), `"Stored":true`) {
				b.Errorf("not stored: %s", sc.Text())
				return
			}
			lat = append(lat, time.Since(sent[i]))
		}
	}()
	rounds0 := ctr.Rounds.Load()
	b.ResetTimer()
	start := time.Now()
	w := bufio.NewWriterSize(send, 64<<10)
	for i := range b.N {
		sent[i] = time.Now()
		w.Write(line)
		if w.Buffered() > 32<<10 || i == b.N-1 {
			w.Flush()
		}
	}
	<-done
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(ctr.Rounds.Load()-rounds0), "events/round")
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func startDurableB(b *testing.B, edit func(*server.Config)) *server.Server {
	cfg := server.DefaultConfig()
	dir := testdir.New(b)
	cfg.SocketPath = dir + "/s"
	cfg.HealthCheckInterval = 0
	cfg.Durable.Store = durable.DefaultConfig(dir + "/store")
	cfg.Durable.Store.Retention.MaxEvents = 10_000_000
	cfg.Durable.Store.Retention.MaxBytes = 4 << 30
	edit(&cfg)
	srv, err := server.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(b.Context()) })
	return srv
}

// dialB registers id on the socket at path (durable or not) and
// subscribes it; a durable receiver's connection first yields its id as
// a line, for pipelined, then what it got.
func dialB(b *testing.B, path, id string, durable bool) net.Conn {
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	d := ""
	if durable {
		d = `,"Durable":true`
	}
	c.Write([]byte(`{"Type":0,"Payload":{"MachineId":"` + id + `"` + d + `}}` + "\n" + `{"Type":3,"Payload":"` + id + `"}` + "\n"))
	r := bufio.NewReader(c)
	for range 2 {
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, `{"Success":true`) {
			b.Fatalf("%s: %v", l, err)
		}
	}
	rest, _ := r.Peek(r.Buffered()) // events stored for id before
	if durable {
		return &idConn{Conn: c, first: append([]byte(id+"\n"), rest...)}
	}
	return c
}

// idConn reads first, then from its connection.
type idConn struct {
	net.Conn
	first []byte
}

func (c *idConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// BenchmarkDurableOneAtATime: one event in flight: the time from writing
// an event to reading its "Stored" acknowledgement when nothing queues
// ahead of it (about one flush), p50 and p99.
func BenchmarkDurableOneAtATime(b *testing.B) {
	for _, pol := range []durable.SyncPolicy{durable.SyncAlways, durable.SyncInterval} {
		b.Run(string(pol), func(b *testing.B) {
			srv := startDurableB(b, func(c *server.Config) { c.Durable.Store.Sync = pol })
			dialB(b, srv.Addr(), "ctl", true)
			oneAtATime(b, "src", "ctl", dialB(b, srv.Addr(), "src", false))
		})
	}
}

// oneAtATime sends b.N events from src to target on send, each after the
// previous one's "Stored" acknowledgement, and reports the time to it.
func oneAtATime(b *testing.B, src, target string, send net.Conn) {
	line := []byte(`{"Type":2,"Payload":{"SourceMachineId":"` + src + `","TargetMachineId":"` + target + `","EventName":"E","Payload":"` + strings.Repeat("x", 100) + `"}}` + "\n")
	r := bufio.NewReader(send)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		send.Write(line)
		l, err := r.ReadString('\n')
		if err != nil || !strings.Contains(l, `"Stored":true`) {
			b.Fatalf("%q %v", l, err)
		}
		lat = append(lat, time.Since(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
