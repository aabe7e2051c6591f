package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/protocol"
)

// flags is a subcommand's flag set with the flags every subcommand has:
// --pipe-name (env STATEBUS_PIPE_NAME), --server-uid (env
// STATEBUS_SERVER_UID), --json, and --url with the TLS files (see
// remoteFlags).
type flags struct {
	*flag.FlagSet
	e         *env
	name      string // "send", "test stress", ...
	synopsis  string // what follows the name in the usage line
	about     string
	example   string
	pipeName  string
	serverUID serverUID
	remote    remoteFlags
	json      bool
}

// newFlags returns the flag set for the subcommand name. about says what
// it does; example is one or more lines of example use.
func newFlags(e *env, name, synopsis, about, example string) *flags {
	f := &flags{FlagSet: flag.NewFlagSet("statebus "+name, flag.ContinueOnError),
		e: e, name: name, synopsis: synopsis, about: about, example: example}
	f.SetOutput(io.Discard) // parse reports errors itself
	def := e.getenv("STATEBUS_PIPE_NAME")
	if def == "" {
		def = protocol.DefaultPipeName
	}
	f.StringVar(&f.pipeName, "pipe-name", def, "pipe name or absolute socket path of statebusd (env STATEBUS_PIPE_NAME)")
	f.serverUID.define(f.FlagSet, e)
	f.remote.define(f.FlagSet, e)
	f.BoolVar(&f.json, "json", false, "print one JSON document instead of text")
	return f
}

// serverUID is the --server-uid flag: the user that must serve the
// socket, as a uid or a user name; by default root or the caller.
type serverUID struct {
	text string
	uid  int
	set  bool
}

const serverUIDUsage = "`USER` (uid or name) that must serve the socket, besides root; default: you (env STATEBUS_SERVER_UID)"

// define adds --server-uid to fs, with its default from the environment.
func (u *serverUID) define(fs *flag.FlagSet, e *env) {
	if v := e.getenv("STATEBUS_SERVER_UID"); v != "" {
		u.Set(v) // a bad value is reported by resolve
		u.text = v
	}
	fs.Var(u, "server-uid", serverUIDUsage)
}

func (u *serverUID) String() string { return u.text }

// Set takes a uid or the name of a user.
func (u *serverUID) Set(v string) error {
	u.text, u.set = v, true
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		u.uid = n
		return nil
	}
	usr, err := user.Lookup(v)
	if err != nil {
		u.uid = -1
		return fmt.Errorf("%q is neither a uid nor a user name", v)
	}
	u.uid, _ = strconv.Atoi(usr.Uid)
	return nil
}

// options returns the client option, if the flag or the environment set
// one.
func (u *serverUID) options() []statebus.Option {
	if !u.set || u.uid < 0 {
		return nil
	}
	return []statebus.Option{statebus.WithServerUID(u.uid)}
}

// usage writes the subcommand's help.
func (f *flags) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: statebus %s %s\n\n%s\n\nExample:\n", f.name, f.synopsis, f.about)
	for _, l := range strings.Split(strings.TrimSpace(f.example), "\n") {
		fmt.Fprintf(w, "  %s\n", l)
	}
	fmt.Fprintln(w, "\nFlags:")
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
}

// parse parses args, flags and positional arguments in any order ("--"
// ends the flags), and checks the positional count is within [min, max]
// (max < 0: no limit). When it returns ok false the command should
// return code: 0 after --help, 2 after a usage error (already reported).
func (f *flags) parse(args []string, min, max int) (pos []string, code int, ok bool) {
	for {
		err := f.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			f.usage(f.e.stdout)
			return nil, 0, false
		}
		if err != nil {
			return nil, f.fail("%v", err), false
		}
		rest := f.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < min:
		return nil, f.fail("expected %s", f.synopsis), false
	case max >= 0 && len(pos) > max:
		return nil, f.fail("unexpected argument %q", pos[max]), false
	case f.serverUID.set && f.serverUID.uid < 0:
		return nil, f.fail("STATEBUS_SERVER_UID=%q is neither a uid nor a user name", f.serverUID.text), false
	}
	return pos, 0, true
}

// fail reports a usage error and returns its exit code, 2.
func (f *flags) fail(format string, args ...any) int {
	fmt.Fprintf(f.e.stderr, "statebus %s: %s\nRun 'statebus %s --help' for usage.\n", f.name, fmt.Sprintf(format, args...), f.name)
	return 2
}

// bus returns the client options that reach the service the flags name.
func (f *flags) bus() []statebus.Option {
	opts := append([]statebus.Option{statebus.WithPipeName(f.pipeName)}, f.serverUID.options()...)
	if f.e.tracer != nil {
		opts = append(opts, statebus.WithTracerProvider(f.e.tracer))
	}
	return append(opts, f.remote.options()...)
}

// socket is the socket path (or the URL) the flags name, for messages.
func (f *flags) socket() string {
	if f.remote.url != "" {
		return f.remote.url
	}
	return protocol.PipePath(f.pipeName)
}

// payloadArg reads the optional JSON payload argument pos[i]: raw is nil
// when it is absent, and p is what to send (nil then, since a nil
// json.RawMessage would be sent as "null"). ok is false, after a usage
// message, when it is not valid JSON.
func (f *flags) payloadArg(pos []string, i int) (raw json.RawMessage, p any, ok bool) {
	if len(pos) <= i {
		return nil, nil, true
	}
	if !json.Valid([]byte(pos[i])) {
		f.fail(`payload %s is not valid JSON; quote it for the shell, e.g. '{"Message":"Hello"}'`, pos[i])
		return nil, nil, false
	}
	raw = json.RawMessage(pos[i])
	return raw, raw, true
}

// checkTarget returns the service's invalid-id error for a target no
// machine can have: empty, too long, or not a machine id, "*" or
// "@GROUP[:*]", so the user is not told it is merely "not connected".
func checkTarget(target string) error {
	if target == protocol.Broadcast {
		return nil
	}
	if group, ok := strings.CutPrefix(target, string(protocol.GroupPrefix)); ok {
		group = strings.TrimSuffix(group, ":*")
		switch {
		case group == "":
			return protocol.ErrInvalidID.New(`"@" needs a group name after it`)
		case len(group) > protocol.MaxIDBytes:
			return protocol.ErrInvalidID.New(fmt.Sprintf("group name longer than %d bytes", protocol.MaxIDBytes))
		}
		return nil
	}
	if err := protocol.ValidateID([]byte(target)); err != nil {
		return err
	}
	return nil
}
