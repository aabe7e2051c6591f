package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestJournalLogs: with JOURNAL_STREAM set and stderr not a terminal (as
// under systemd), statebusd logs JSON with syslog priority prefixes, and
// at Info it logs nothing per event or per connection.
func TestJournalLogs(t *testing.T) {
	path := filepath.Join(shortDir(t), "bus.sock")
	d := startDaemon(t, []string{"--pipe-name", path}, []string{"JOURNAL_STREAM=8:4242"})
	recs := d.records(t) // fails on any line that is not JSON
	if len(recs) == 0 || recs[0]["priority"] != "6" {
		t.Fatalf("records %v", recs)
	}
	before := len(recs)

	ctx := context.Background()
	a, err := statebus.Dial(ctx, "a", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := statebus.Dial(ctx, "b", statebus.WithPipeName(path))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if err := a.SendEvent(ctx, "b", "TICK", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SendEvent(ctx, "nobody", "TICK", nil); err == nil {
		t.Fatal("event to nobody accepted")
	}
	b.Close()
	bustest.Eventually(t, 5*time.Second, func() bool {
		ms, _ := statebus.Machines(ctx, statebus.WithPipeName(path))
		return len(ms) == 1
	}, "b still registered")
	if got := d.records(t); len(got) != before {
		t.Fatalf("%d records at Info for 500 events and two connections:\n%s", len(got)-before, d.stderr)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog(t, "stopped")
	for _, r := range d.records(t)[before:] {
		if r["category"] != "statebus.daemon" && r["category"] != "statebus.server" {
			t.Errorf("record without a category: %v", r)
		}
	}
}

// TestTextLogs: without the journal, logs are text lines with the
// category.
func TestTextLogs(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	started := make(chan *server.Server, 1)
	var stderr bustest.Buffer
	code := make(chan int, 1)
	path := filepath.Join(shortDir(t), "bus.sock")
	go func() {
		code <- run([]string{"--pipe-name", path, "--http", ""}, env(map[string]string{}), os.Stdout, &stderr, sigs, started)
	}()
	<-started
	sigs <- syscall.SIGTERM
	if c := <-code; c != 0 {
		t.Fatalf("exit %d: %s", c, stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{
		`level=INFO msg="statebusd listening" category=statebus.server socket=` + path,
		`level=INFO msg="shutting down" category=statebus.daemon signal=terminated`,
		`level=INFO msg=stopped category=statebus.daemon`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	var out strings.Builder
	if c := run([]string{"--version"}, env(nil), &out, os.Stderr, nil, nil); c != 0 ||
		!strings.HasPrefix(out.String(), "statebusd ") || !strings.Contains(out.String(), "(commit ") {
		t.Fatalf("--version: %d %q", c, out.String())
	}
}
