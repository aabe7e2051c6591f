package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

func TestRequestCommand(t *testing.T) {
	srv := bustest.Start(t, nil)
	svc, err := statebus.Dial(context.Background(), "calc", statebus.WithPipeName(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	svc.HandleRequest("ADD", func(_ context.Context, e statebus.Event) (any, error) {
		var in struct{ A, B int }
		e.Decode(&in)
		return map[string]int{"Sum": in.A + in.B}, nil
	})
	e, out, errOut := newEnv("")
	if code := run(context.Background(), e, []string{"request", "--pipe-name", srv.Addr(), "calc", "ADD", `{"A":2,"B":3}`}); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if got := out.String(); got != "{\"Sum\":5}\n" {
		t.Fatalf("stdout %q", got)
	}
	e, out, _ = newEnv("")
	run(context.Background(), e, []string{"request", "--json", "--pipe-name", srv.Addr(), "calc", "ADD", `{"A":1,"B":1}`})
	var doc struct {
		OK    bool
		Reply struct{ Sum int }
	}
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil || !doc.OK || doc.Reply.Sum != 2 {
		t.Fatalf("json %q", out.String())
	}
	e, _, errOut = newEnv("")
	if code := run(context.Background(), e, []string{"request", "--pipe-name", srv.Addr(), "nobody", "ADD"}); code != 1 ||
		!strings.Contains(errOut.String(), "No responder: nobody is not connected") {
		t.Fatalf("no responder: exit %d, %q", code, errOut.String())
	}
}
