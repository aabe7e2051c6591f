package orchestrator_test

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/orchestrator"
)

// TestDotNetInterop runs the repository's C# client
// (testdata/dotnet/InteropClient.cs, built with Mono's mcs), which talks
// as XStateNet's InterProcessClient does, against the example's pong
// machine hosted by an orchestrator: it sends PING and prints the PONG
// the machine's action sent back.
func TestDotNetInterop(t *testing.T) {
	ctx := ctxT(t)
	mono, exe := bustest.DotNetClient(t, "..")
	srv := bustest.Start(t, nil)
	o := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())))
	if err := o.Register(ctx, "go-machine", load(t, "pong.json", pongImpl)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, mono, exe, srv.Addr(), "dotnet", "go-machine")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mono InteropClient.exe: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	out := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	pong := regexp.MustCompile(`^\{"Success":true,"Data":\{"SourceMachineId":"go-machine","TargetMachineId":"dotnet","EventName":"PONG",` +
		`"Payload":\{"Message":"Hello from \.NET"\},"Timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"\},"Error":null\}$`)
	if len(out) != 2 || !pong.MatchString(out[0]) ||
		out[1] != `{"Success":false,"Data":null,"Error":"Target machine not connected: no-such-machine"}` {
		t.Fatalf(".NET client printed:\n%s\nstderr:\n%s", &stdout, &stderr)
	}
	if m := o.Machine("go-machine"); m.State() != "#pong.ponging" || num(m.Context()["count"]) != 1 {
		t.Fatalf("go-machine: %s, %v PINGs", m.State(), m.Context()["count"])
	}
}
