package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/protocol"
)

// out writes a command's human output. It is safe for concurrent use:
// event handlers print while the command's own goroutine does. ✓ and ✗
// are coloured only on a terminal.
type out struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
}

func newOut(w io.Writer, color bool) *out { return &out{w: w, color: color} }

// stdout returns an out for e's standard output.
func stdout(e *env) *out { return newOut(e.stdout, e.tty) }

// mark returns ✓ or ✗.
func (o *out) mark(ok bool) string {
	switch {
	case ok && o.color:
		return "\x1b[32m✓\x1b[0m"
	case ok:
		return "✓"
	case o.color:
		return "\x1b[31m✗\x1b[0m"
	}
	return "✗"
}

// check prints a ✓ or ✗ line.
func (o *out) check(ok bool, format string, args ...any) {
	o.printf("%s %s\n", o.mark(ok), fmt.Sprintf(format, args...))
}

func (o *out) printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format, args...)
}

// writeJSON prints v as the command's one JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// jsonError is the JSON document of a command that failed.
type jsonError struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// failure reports err for command name: a ✗ line with a hint on stderr,
// and with --json also {"ok":false,"error":...} on stdout. It returns
// the exit code, 1.
func failure(e *env, f *flags, err error) int {
	o := newOut(e.stderr, false)
	o.check(false, "%s", errText(err))
	if h := hint(err, f); h != "" {
		o.printf("  %s\n", h)
	}
	if f.json {
		writeJSON(e.stdout, jsonError{Error: errText(err)})
	}
	return 1
}

// errText is what to show for err: the service's own text when it sent
// one, so "Target machine not connected: X" reads exactly as on the wire.
func errText(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Text
	}
	return strings.TrimPrefix(err.Error(), "statebus: ")
}

// hint says what to do about err.
func hint(err error, f *flags) string {
	var na *notAckedError
	if errors.As(err, &na) {
		return na.hint(f)
	}
	var nr *noReplyError
	if errors.As(err, &nr) {
		return nr.hint()
	}
	switch {
	case errors.Is(err, statebus.ErrTargetNotConnected):
		return "No machine with that id is connected. 'statebus machines" + pipeArg(f) + "' lists the ones that are."
	case errors.Is(err, statebus.ErrIDInUse):
		if f != nil && f.Lookup("as") != nil {
			return "Another client holds that machine id. Pick another one (--as ID), or stop the other client."
		}
		return "Another client holds that machine id. Use another one, or stop the other client."
	case errors.Is(err, statebus.ErrSlowConsumer):
		who := "The target"
		if id := strings.TrimPrefix(errText(err), protocol.ErrSlowConsumer.Prefix); id != errText(err) && id != "" {
			who = id
		}
		return who + " is not reading its events: its queue stayed full for the service's SlowConsumerTimeout. Check that its process is alive and not blocked."
	case errors.Is(err, context.DeadlineExceeded):
		return "Timed out. Is statebusd overloaded? 'statebus health" + pipeArg(f) + "' shows its state."
	case errors.Is(err, protocol.ErrTooManyConnections):
		return "statebusd is running but full: it has as many clients as its MaxConnections allows. 'statebus machines" + pipeArg(f) + "' shows who holds them (once one leaves); or raise MessageBus.MaxConnections."
	case errors.Is(err, statebus.ErrAccessDenied) && f != nil && f.remote.tls():
		return "statebusd is running, but refuses your client certificate (--tls-cert), or its access rules (MessageBus.Access: Cert rules, AllowCerts) do not allow this for it. Ask its operator for a certificate its TlsClientCa signs."
	case errors.Is(err, statebus.ErrAccessDenied):
		return "statebusd is running, but its access rules (MessageBus.Access in its config) do not allow this for your user. Ask its operator, or run as a user they allow."
	case errors.Is(err, os.ErrPermission):
		return "statebusd may be running, but your user may not open its socket" + socketArg(f) + " (file mode or directory permissions). Ask the operator to add you to the socket's group, or run as a user who may."
	case errors.Is(err, statebus.ErrUntrustedServer) && f != nil && f.remote.tls():
		return "The server's certificate is not signed by a CA you trust, or not for that host name. Give the CA that signs statebusd's certificate with --tls-ca (or STATEBUS_TLS_CA), and use the host name its certificate names."
	case errors.Is(err, statebus.ErrUntrustedServer):
		return "Another user than expected serves that socket. If that user runs your statebusd, say so with --server-uid UID (or STATEBUS_SERVER_UID); if not, find who listens there (ss -xlp) before you trust it."
	case (errors.Is(err, statebus.ErrNotConnected) || errors.Is(err, statebus.ErrClosed)) && f != nil && f.remote.url != "":
		return "Check that statebusd there serves that address (TlsListen, or PlainTcp for tcp://), and that no firewall is in between."
	case errors.Is(err, statebus.ErrNotConnected), errors.Is(err, statebus.ErrClosed):
		return "Start it with 'statebusd" + pipeArg(f) + "', or point --pipe-name (or STATEBUS_PIPE_NAME) at the running one."
	}
	return ""
}

// socketArg is " PATH", the socket f names, for a message.
func socketArg(f *flags) string {
	if f == nil {
		return ""
	}
	return " " + f.socket()
}

// pipeArg repeats a --url or a non-default --pipe-name for a suggested
// command line.
func pipeArg(f *flags) string {
	switch {
	case f == nil:
		return ""
	case f.remote.url != "":
		return " --url " + f.remote.url
	case f.pipeName == "" || f.pipeName == protocol.DefaultPipeName:
		return ""
	}
	return " --pipe-name " + f.pipeName
}

// ms formats d in milliseconds: "54ms", or "0.54ms" below 10ms.
func ms(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// commas formats n with thousands separators: 1,832.
func commas(n int64) string {
	s := fmt.Sprint(n)
	sign := ""
	if n < 0 {
		sign, s = "-", s[1:]
	}
	var b strings.Builder
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(s[i])
	}
	return sign + b.String()
}

// lineReader reads lines from an input on its own goroutine, so a
// command can wait for the next line and for ctx at once.
type lineReader struct {
	lines    chan string
	done     chan struct{}
	stopOnce sync.Once
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string), done: make(chan struct{})}
	go func() {
		defer close(lr.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lr.lines <- sc.Text():
			case <-lr.done:
				return
			}
		}
	}()
	return lr
}

// next returns the next line, trimmed; ok is false at end of input or
// when ctx ends.
func (lr *lineReader) next(ctx context.Context) (line string, ok bool) {
	select {
	case l, ok := <-lr.lines:
		return strings.TrimSpace(l), ok
	case <-ctx.Done():
		return "", false
	}
}

// stop lets the reading goroutine end. It cannot interrupt a read that
// is blocked: on a terminal the goroutine ends with the process.
func (lr *lineReader) stop() { lr.stopOnce.Do(func() { close(lr.done) }) }
