package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		name    string
		section map[string]string
		want    map[string]slog.Level
	}{
		{"empty is info", nil,
			map[string]slog.Level{Daemon: slog.LevelInfo, Server: slog.LevelInfo, HTTP: slog.LevelInfo}},
		{"default", map[string]string{"Default": "Warning"},
			map[string]slog.Level{Daemon: slog.LevelWarn, Server: slog.LevelWarn, HTTP: slog.LevelWarn}},
		{"the seed's file: XStateNet.InterProcess covers the whole service",
			map[string]string{"Default": "Information", "XStateNet.InterProcess": "Debug"},
			map[string]slog.Level{Daemon: slog.LevelDebug, Server: slog.LevelDebug, HTTP: slog.LevelDebug}},
		{"one category", map[string]string{"Default": "Error", "statebus.server": "debug"},
			map[string]slog.Level{Daemon: slog.LevelError, Server: slog.LevelDebug, HTTP: slog.LevelError}},
		{"parent key, longer key wins", map[string]string{"statebus": "warn", "statebus.http": "error"},
			map[string]slog.Level{Daemon: slog.LevelWarn, Server: slog.LevelWarn, HTTP: slog.LevelError}},
		{"original class name", map[string]string{"XStateNet.InterProcess.Service.NamedPipeMessageBus": "Trace"},
			map[string]slog.Level{Daemon: slog.LevelInfo, Server: slog.LevelDebug, HTTP: slog.LevelInfo}},
		{"prefix must end at a dot; unknown keys ignored",
			map[string]string{"statebus.serv": "error", "Microsoft": "Warning"},
			map[string]slog.Level{Daemon: slog.LevelInfo, Server: slog.LevelInfo, HTTP: slog.LevelInfo}},
		{"case-insensitive keys", map[string]string{"STATEBUS.SERVER": "Critical"},
			map[string]slog.Level{Daemon: slog.LevelInfo, Server: slog.LevelError, HTTP: slog.LevelInfo}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Levels(tc.section)
			if err != nil {
				t.Fatal(err)
			}
			for c, l := range tc.want {
				if got[c] != l {
					t.Errorf("%s: %v, want %v", c, got[c], l)
				}
			}
		})
	}
	if _, err := Levels(map[string]string{"statebus.http": "loud"}); err == nil ||
		err.Error() != `Logging:LogLevel:statebus.http: unknown log level "loud": use debug, info, warn or error` {
		t.Fatalf("bad level: %v", err)
	}
}

func TestCategoriesAndLiveLevels(t *testing.T) {
	var buf bytes.Buffer
	logs, err := New(&buf, Options{Format: JSON, Levels: map[string]slog.Level{Server: slog.LevelWarn}})
	if err != nil {
		t.Fatal(err)
	}
	srv, daemon := logs.Logger(Server), logs.Logger(Daemon).With("k", "v")
	srv.Info("hidden")
	srv.Warn("shown")
	daemon.Info("daemon info")
	daemon.Debug("hidden")
	logs.SetLevels(map[string]slog.Level{Server: slog.LevelDebug})
	srv.Debug("now shown")
	if logs.Level(Server) != slog.LevelDebug || logs.Level(Daemon) != slog.LevelInfo {
		t.Fatalf("levels %v %v", logs.Level(Server), logs.Level(Daemon))
	}

	var got []map[string]any
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		got = append(got, m)
	}
	want := []struct{ msg, cat, level string }{
		{"shown", Server, "WARN"}, {"daemon info", Daemon, "INFO"}, {"now shown", Server, "DEBUG"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records: %v", len(got), got)
	}
	for i, w := range want {
		if got[i]["msg"] != w.msg || got[i]["category"] != w.cat || got[i]["level"] != w.level {
			t.Errorf("record %d: %v, want %+v", i, got[i], w)
		}
	}
	if got[1]["k"] != "v" {
		t.Errorf("With attrs lost: %v", got[1])
	}
}

func TestJournalOutput(t *testing.T) {
	r, w, err := os.Pipe() // not a terminal
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dev, ino, ok := StreamID(w)
	if !ok {
		t.Skip("no device and inode for a pipe on this system")
	}
	// As systemd sets it: the device and inode of the stream it connected.
	env := map[string]string{"JOURNAL_STREAM": fmt.Sprintf("%d:%d", dev, ino)}
	f, out := Output("", w, func(k string) string { return env[k] })
	if f != JSON {
		t.Fatalf("format %q under the journal, want json", f)
	}
	logs, err := New(out, Options{Format: f, Levels: map[string]slog.Level{Daemon: slog.LevelDebug}})
	if err != nil {
		t.Fatal(err)
	}
	l := logs.Logger(Daemon)
	l.Debug("d")
	l.Info("i")
	l.Warn("w")
	l.Error("e")
	w.Close()
	var lines []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i, p := range []string{"<7>{", "<6>{", "<4>{", "<3>{"} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], p) {
			t.Fatalf("line %d: %q, want prefix %q (all: %q)", i, lines, p, lines)
		}
	}

	// Without the journal: text, no prefix; an explicit format wins.
	var buf bytes.Buffer
	if f, out := Output("", &buf, func(string) string { return "" }); f != Text || out != &buf {
		t.Fatalf("plain: %q %T", f, out)
	}
	if f, _ := Output("text", w, func(k string) string { return env[k] }); f != Text {
		t.Fatalf("--log-format text under the journal: %q", f)
	}
	// JOURNAL_STREAM inherited by a process whose stderr is elsewhere (a
	// shell started from a unit, its output to a file or a pipe): not the
	// journal.
	other, err := os.CreateTemp(bustest.TempDir(t), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, js := range []string{env["JOURNAL_STREAM"], "8:12345", "garbage", ""} {
		if f, out := Output("", other, func(string) string { return js }); f != Text || out != other {
			t.Errorf("JOURNAL_STREAM=%q naming another stream: %q %T, want text to the file", js, f, out)
		}
	}
	if _, err := New(&buf, Options{Format: "xml"}); err == nil {
		t.Fatal("xml accepted")
	}
}
