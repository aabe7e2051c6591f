package main

import (
	"context"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/config"
	"github.com/statebus/statebus/internal/logging"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/systemd"
)

// TestJournalLogs: with JOURNAL_STREAM naming stderr (as under systemd),
// statebusd logs JSON with syslog priority prefixes, and at Info it logs
// nothing per event or per connection.
func TestJournalLogs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only: the journal (JOURNAL_STREAM names stderr by device and inode)")
	}
	path := busPath(t)
	d := startDaemon(t, []string{"--pipe-name", path}, []string{"STATEBUSD_TEST_JOURNAL=1"})
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
	path := busPath(t)
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

// TestInheritedJournalStream: JOURNAL_STREAM inherited from a unit by a
// statebusd whose stderr goes elsewhere (here a buffer) is not
// the journal: text logs, no priority prefixes.
func TestInheritedJournalStream(t *testing.T) {
	path := busPath(t)
	stderr, sigs, code := runInProcess(t, []string{"--pipe-name", path, "--http", "off"},
		env(map[string]string{"JOURNAL_STREAM": "8:4242"}))
	sigs <- syscall.SIGTERM
	<-code
	if out := stderr.String(); !strings.Contains(out, `level=INFO msg="statebusd listening"`) || strings.Contains(out, "<6>") {
		t.Fatalf("want text logs:\n%s", out)
	}
}

// TestHelp: --help answers on stdout, exit 0; every flag shows its type
// and every environment variable statebusd reads is listed.
func TestHelp(t *testing.T) {
	var stdout, stderr strings.Builder
	if c := run([]string{"--help"}, env(nil), &stdout, &stderr, nil, nil); c != 0 || stderr.Len() != 0 {
		t.Fatalf("--help: exit %d, stderr %q", c, stderr.String())
	}
	help := stdout.String()
	for _, want := range []string{
		"Usage: statebusd [flags]",
		"--max-connections int\n        most clients connected at once (default 100)\n",
		"--slow-consumer-timeout seconds\n",
		"--health-interval int\n",
		"--socket-mode octal\n",
		"--http host:port|off\n",
		"--http-machines bool\n",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
	// Every variable the configuration, the log setup and systemd's
	// protocol ask for.
	asked := map[string]bool{"TMPDIR": true, "GOMEMLIMIT": true}
	record := func(k string) string { asked[k] = true; return "" }
	if _, err := config.Load(nil, record); err != nil {
		t.Fatal(err)
	}
	logging.Output("", &stdout, record)
	systemd.Listeners(record, os.Getpid())
	systemd.NewNotifier(record)
	systemd.WatchdogInterval(record, os.Getpid())
	for k := range asked {
		if !strings.Contains(help, k) {
			t.Errorf("--help does not list the environment variable %s", k)
		}
	}
	for _, k := range []string{"STATEBUS_LOG_LEVEL", "STATEBUS_LOG_FORMAT", "JOURNAL_STREAM", "NOTIFY_SOCKET"} {
		if !asked[k] {
			t.Errorf("%s was not asked for: the check above does not see everything", k)
		}
	}

	// A bad flag: stderr, exit 2, pointing at --help.
	stdout.Reset()
	stderr.Reset()
	if c := run([]string{"--bogus"}, env(nil), &stdout, &stderr, nil, nil); c != 2 || stdout.Len() != 0 ||
		stderr.String() != "statebusd: flag provided but not defined: -bogus (see --help)\n" {
		t.Fatalf("--bogus: exit %d, stdout %q, stderr %q", c, stdout.String(), stderr.String())
	}
}

func TestVersion(t *testing.T) {
	var out strings.Builder
	if c := run([]string{"--version"}, env(nil), &out, os.Stderr, nil, nil); c != 0 ||
		!strings.HasPrefix(out.String(), "statebusd ") || !strings.Contains(out.String(), "(commit ") {
		t.Fatalf("--version: %d %q", c, out.String())
	}
}
