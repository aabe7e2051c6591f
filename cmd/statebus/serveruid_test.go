package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// runCmdEnv is runCmd with environment variables.
func runCmdEnv(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, out, errOut := newEnv("")
	e.getenv = func(k string) string { return vars[k] }
	code := run(ctx, e, args)
	return result{code, out.String(), errOut.String()}
}

func TestServerUIDUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"health", "--server-uid", "no-such-user-x"}, nil, `invalid value "no-such-user-x" for flag -server-uid: "no-such-user-x" is neither a uid nor a user name`},
		{[]string{"send", "a", "E"}, map[string]string{"STATEBUS_SERVER_UID": "-3"}, `STATEBUS_SERVER_UID="-3" is neither a uid nor a user name`},
		{[]string{"bench"}, map[string]string{"STATEBUS_SERVER_UID": "x y"}, `STATEBUS_SERVER_UID="x y" is neither a uid nor a user name`},
	} {
		r := runCmdEnv(t, tc.env, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v with %v: exit %d, stderr %q; want 2 and %q", tc.args, tc.env, r.code, r.stderr, tc.want)
		}
	}
}
