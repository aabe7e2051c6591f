package durable_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/server"
)

// TestDiskFull runs the store on a 2 MiB tmpfs (root only): senders get
// "Not stored: ... the disk holding ... is full ..." and nothing that was
// acknowledged is lost; once the file system has room again (it is
// made larger) the store stores again without a restart, every
// acknowledged event reads back intact, and again after a restart.
func TestDiskFull(t *testing.T) {
	dir := tmpfs(t, "2m")
	store := dir + "/store"
	sock := bustest.SocketPath(t)
	start := func() *server.Server {
		cfg := server.DefaultConfig()
		cfg.SocketPath = sock
		cfg.HealthCheckInterval = 0
		cfg.Durable.Store = durable.DefaultConfig(store)
		cfg.Durable.Store.MaxStoreBytes = 64 << 20 // more than the disk has
		cfg.Durable.Patterns = []string{"ctl"}
		cfg.Logger = slog.New(slog.NewTextHandler(tlog{t}, nil))
		srv, err := server.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, `{"Type":0,"Payload":{"MachineId":"src"}}`+"\n")
	r := bufio.NewReader(c)
	r.ReadString('\n')
	big := strings.Repeat("x", 16<<10)
	acked := map[int]bool{}
	var refusal string
	for i := 0; i < 1000 && refusal == ""; i++ {
		fmt.Fprintf(c, `{"Type":2,"Id":%d,"Payload":{"SourceMachineId":"src","TargetMachineId":"ctl","EventName":"E","Payload":"%d%s"}}`+"\n", i, i, big)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if strings.Contains(l, `"Stored":true`) {
			acked[i] = true
		} else {
			refusal = l
		}
	}
	if refusal == "" {
		t.Fatal("1000 events of 16 KiB fit a 2 MiB file system")
	}
	t.Logf("%d events stored, then: %s", len(acked), refusal)
	if !strings.Contains(refusal, `"Error":"Not stored: durable store cannot store the event (the disk holding `+store+` is full: `) ||
		!strings.Contains(refusal, "free disk space or check the store's disk, then send again (the store stores again by itself once the disk has room; if it does not, restart statebusd)") {
		t.Fatalf("refusal does not say what happened and what to do: %s", refusal)
	}
	// Later events are refused at once, with the same text.
	t0 := time.Now()
	fmt.Fprintf(c, `{"Type":2,"Id":"late","Payload":{"SourceMachineId":"src","TargetMachineId":"ctl","EventName":"E","Payload":1}}`+"\n")
	l, err := r.ReadString('\n')
	if err != nil || !strings.Contains(l, "is full: ") || time.Since(t0) > 5*time.Second {
		t.Fatalf("after the disk filled: %q %v after %v", l, err, time.Since(t0))
	}

	// The disk gets room: the store stores again without a restart.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	t0 = time.Now()
	var seq string
	bustest.Eventually(t, 30*time.Second, func() bool {
		fmt.Fprintf(c, `{"Type":2,"Id":"again","Payload":{"SourceMachineId":"src","TargetMachineId":"ctl","EventName":"E","Payload":"again"}}`+"\n")
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(l, `"Stored":true,"Sequence":`); i >= 0 {
			seq = l[i+len(`"Stored":true,"Sequence":`) : i+len(`"Stored":true,"Sequence":`)+strings.IndexByte(l[i+len(`"Stored":true,"Sequence":`):], '}')]
			return true
		}
		if !strings.Contains(l, "is full: ") {
			t.Fatalf("while the disk gets room: %s", l)
		}
		return false
	}, "the store never stored again")
	t.Logf("stored again %v after the disk had room, as sequence %s", time.Since(t0).Round(100*time.Millisecond), seq)
	if want := strconv.Itoa(len(acked) + 1); seq != want {
		t.Fatalf("the first event after the disk had room is sequence %s, want %s", seq, want)
	}
	readBack := func(srv *server.Server) {
		t.Helper()
		mb := srv.Durable().Lookup([]byte("ctl"))
		if mb == nil {
			t.Fatal("mailbox lost")
		}
		evs, _, err := srv.Durable().Read(mb, 1, time.Time{}, 1000, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != len(acked)+1 {
			t.Fatalf("%d events read back, %d were acknowledged", len(evs), len(acked)+1)
		}
		for i, e := range evs[:len(acked)] {
			want := fmt.Sprintf(`"%d%s"`, i, big)
			if !strings.Contains(string(e.Event), `"Payload":`+want) {
				t.Fatalf("event %d corrupt: %.80s", i+1, e.Event)
			}
		}
		if !strings.Contains(string(evs[len(acked)].Event), `"Payload":"again"`) {
			t.Fatalf("the last event is %.80s", evs[len(acked)].Event)
		}
	}
	readBack(srv)
	c.Close()
	srv.Shutdown(t.Context())

	// And after a restart.
	srv = start()
	defer srv.Shutdown(t.Context())
	readBack(srv)
	c2 := dialRaw(t, srv)
	c2.Send(`{"Type":0,"Payload":{"MachineId":"src"}}`)
	c2.Read()
	c2.Send(`{"Type":2,"Payload":{"SourceMachineId":"src","TargetMachineId":"ctl","EventName":"E","Payload":"after"}}`)
	c2.ExpectMatch(`\{"Success":true,"Data":\{"Delivered":false,"TargetMachineId":"ctl","Stored":true,"Sequence":\d+\},"Error":null\}`)
}

// tmpfs mounts a tmpfs of size on a temporary directory (Linux, root;
// else the test is skipped) and returns it.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("Linux only: mounts a tmpfs")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

// TestRedriveDiskFull: a dead letter stays one until its copy is stored.
// The disk fills up (a file takes the room) right before a re-drive:
// the re-drive fails with the store's error, and once there is room and
// statebusd restarted, the dead letter is still listed and re-drives.
func TestRedriveDiskFull(t *testing.T) {
	dir := tmpfs(t, "4m")
	sock := bustest.SocketPath(t)
	start := func() *server.Server {
		return bustest.Start(t, func(c *server.Config) {
			c.SocketPath = sock
			c.Durable.Store = durable.DefaultConfig(dir + "/store")
			c.Durable.Store.MaxStoreBytes = 64 << 20
			c.Durable.Store.MaxDeliveries = 1
			c.Durable.Patterns = []string{"ctl"}
		})
	}
	srv := start()
	a := dialRaw(t, srv).Connect("a")
	r := dialRaw(t, srv).Connect("ctl")
	// Larger than what the store's files may have allocated already.
	ev := `{"SourceMachineId":"a","TargetMachineId":"ctl","EventName":"E","Payload":"` + strings.Repeat("x", 256<<10) + `"}`
	a.Send(`{"Type":2,"Payload":` + ev + `}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":false,"TargetMachineId":"ctl","Stored":true,"Sequence":1},"Error":null}`)
	r.Expect(`{"Success":true,"Data":` + ev + `,"Error":null,"Mailbox":"ctl","Sequence":1}`)
	r.Send(`{"Type":108,"Payload":{"MachineId":"ctl","Sequence":1,"Refuse":"cannot"}}`)
	deadLetters := func() int {
		_, total, err := srv.Durable().DeadLetters("ctl", 10)
		if err != nil {
			t.Fatal(err)
		}
		return total
	}
	bustest.Eventually(t, 10*time.Second, func() bool { return deadLetters() == 1 }, "no dead letter")

	// The disk fills up.
	f, err := os.Create(dir + "/filler")
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for len(chunk) > 1 { // the last bytes too
		chunk = chunk[:len(chunk)/2]
		for {
			if _, err := f.Write(chunk); err != nil {
				break
			}
		}
	}
	f.Close()
	a.Send(`{"Type":110,"Id":"rd","Payload":{"MachineId":"ctl","Redrive":true}}`)
	a.C.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := a.R.ReadString('\n')
	if err != nil || !strings.Contains(l, `"Error":"Not stored: durable store cannot store the event`) {
		t.Fatalf("re-drive on a full disk: %q %v", l, err)
	}
	a.C.Close()
	r.C.Close()
	srv.Shutdown(t.Context())

	os.Remove(dir + "/filler")
	srv = start()
	if n := deadLetters(); n != 1 {
		t.Fatalf("after the failed re-drive: %d dead letters, want 1", n)
	}
	a = dialRaw(t, srv).Connect("a")
	a.Send(`{"Type":110,"Id":"rd","Payload":{"MachineId":"ctl","Redrive":true}}`)
	a.Expect(`{"Success":true,"Data":{"Total":0,"Redriven":1},"Error":null,"Id":"rd"}`)
	r = dialRaw(t, srv).Connect("ctl")
	r.Expect(`{"Success":true,"Data":` + ev + `,"Error":null,"Mailbox":"ctl","Sequence":2}`)
}
