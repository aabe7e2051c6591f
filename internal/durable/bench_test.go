package durable_test

import (
	"bufio"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/durable"
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
			recv := dialB(b, srv, "ctl", true)
			send := dialB(b, srv, "src", false)
			payload := strings.Repeat("x", 100)
			line := []byte(`{"Type":2,"Payload":{"SourceMachineId":"src","TargetMachineId":"ctl","EventName":"E","Payload":"` + payload + `"}}` + "\n")
			go func() { // the receiver acknowledges every 100th
				sc := bufio.NewScanner(recv)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				n := 0
				for sc.Scan() {
					if n++; n%100 == 0 {
						l := sc.Text()
						i := strings.LastIndex(l, `"Sequence":`)
						seq := strings.TrimSuffix(l[i+len(`"Sequence":`):], "}")
						recv.Write([]byte(`{"Type":108,"Payload":{"MachineId":"ctl","Sequence":` + seq + `}}` + "\n"))
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
			rounds0 := srv.Durable().Counters().Rounds.Load()
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
			b.ReportMetric(float64(b.N)/float64(srv.Durable().Counters().Rounds.Load()-rounds0), "events/round")
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
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

func dialB(b *testing.B, srv *server.Server, id string, durable bool) net.Conn {
	c, err := net.Dial("unix", srv.Addr())
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
	return c
}

// BenchmarkDurableOneAtATime: one event in flight: the time from writing
// an event to reading its "Stored" acknowledgement when nothing queues
// ahead of it (about one flush), p50 and p99.
func BenchmarkDurableOneAtATime(b *testing.B) {
	for _, pol := range []durable.SyncPolicy{durable.SyncAlways, durable.SyncInterval} {
		b.Run(string(pol), func(b *testing.B) {
			srv := startDurableB(b, func(c *server.Config) { c.Durable.Store.Sync = pol })
			dialB(b, srv, "ctl", true)
			send := dialB(b, srv, "src", false)
			line := []byte(`{"Type":2,"Payload":{"SourceMachineId":"src","TargetMachineId":"ctl","EventName":"E","Payload":"` + strings.Repeat("x", 100) + `"}}` + "\n")
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
		})
	}
}
