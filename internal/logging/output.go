package logging

import (
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// Output chooses where and how statebusd logs, from --log-format (format,
// possibly "") and the environment:
//
//   - When stderr is the journal, JSON, and every line starts with its
//     syslog priority (<3> error, <4> warning, <6> info, <7> debug) so that
//     `journalctl -p warning` works; journald strips the prefix. Stderr is
//     the journal when JOURNAL_STREAM names its device and inode, as
//     systemd.exec(5) says to check: a child that inherited the variable
//     but writes to a terminal, a file or a pipe is not logging to it.
//   - Otherwise text, or what format says.
func Output(format string, stderr io.Writer, getenv func(string) string) (Format, io.Writer) {
	journal := sameStream(getenv("JOURNAL_STREAM"), stderr)
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

// sameStream reports whether journalStream, systemd's "DEVICE:INODE",
// names w's file.
func sameStream(journalStream string, w io.Writer) bool {
	dev, ino, ok := strings.Cut(journalStream, ":")
	if !ok {
		return false
	}
	d, err1 := strconv.ParseUint(dev, 10, 64)
	i, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	wd, wi, ok := StreamID(w)
	return ok && wd == d && wi == i
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
