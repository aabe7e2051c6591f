package logging

import (
	"io"
	"log/slog"
	"os"
	"strconv"
)

// Output chooses where and how statebusd logs, from --log-format (format,
// possibly "") and the environment:
//
//   - On a terminal, text, unless format says otherwise.
//   - When stderr is not a terminal and JOURNAL_STREAM is set (systemd
//     connected it to the journal), JSON, and every line starts with its
//     syslog priority (<3> error, <4> warning, <6> info, <7> debug) so that
//     `journalctl -p warning` works; journald strips the prefix.
//   - Otherwise text, or what format says.
func Output(format string, stderr io.Writer, getenv func(string) string) (Format, io.Writer) {
	journal := getenv("JOURNAL_STREAM") != "" && !isTerminal(stderr)
	f := Format(format)
	if f == "" {
		f = Text
		if journal {
			f = JSON
		}
	}
	if journal {
		return f, Journal{W: stderr}
	}
	return f, stderr
}

// Journal writes records to a stream systemd connected to the journal,
// each prefixed with its syslog priority.
type Journal struct{ W io.Writer }

// WriteLevel writes p prefixed with level's priority as "<N>".
func (j Journal) WriteLevel(level slog.Level, p []byte) (int, error) {
	b := make([]byte, 0, len(p)+3)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(Priority(level)), 10)
	b = append(b, '>')
	if _, err := j.W.Write(append(b, p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Write writes p at info priority.
func (j Journal) Write(p []byte) (int, error) { return j.WriteLevel(slog.LevelInfo, p) }

// Priority maps a level to syslog's priorities.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
