package statebus_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestDotNetInterop runs a C# client (testdata/dotnet/InteropClient.cs,
// built with Mono's mcs) that speaks to the bus exactly as XStateNet's
// InterProcessClient does: NamedPipeClientStream, a UTF-8 StreamWriter that
// sends a BOM, one JSON object per line. It pings a Go client, which
// answers PONG, and sends to a machine that does not exist.
func TestDotNetInterop(t *testing.T) {
	mono, exe := bustest.DotNetClient(t, ".")

	t.Run("AbsolutePath", func(t *testing.T) {
		srv := bustest.Start(t, nil)
		runDotNet(t, mono, exe, srv, srv.Addr(), nil, "dotnet-abs")
	})
	t.Run("Traced", func(t *testing.T) {
		// The Go machine traces: its PONG carries "traceparent", which
		// the .NET client takes like any other event.
		srv := bustest.Start(t, nil)
		tp := sdktrace.NewTracerProvider()
		defer tp.Shutdown(context.Background())
		runDotNet(t, mono, exe, srv, srv.Addr(), nil, "dotnet-traced", statebus.WithTracerProvider(tp))
	})
	t.Run("PipeName", func(t *testing.T) {
		// A plain pipe name is $TMPDIR/CoreFxPipe_<name> to .NET.
		dir, err := os.MkdirTemp("", "sbnet")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		srv := bustest.Start(t, func(c *server.Config) {
			c.SocketPath = filepath.Join(dir, "CoreFxPipe_InteropBus")
		})
		runDotNet(t, mono, exe, srv, "InteropBus", []string{"TMPDIR=" + dir}, "dotnet-name")
	})
}

// runDotNet connects a Go machine "go-machine" that answers PING with PONG,
// runs the .NET client as dotnetID on pipe and checks both sides.
func runDotNet(t *testing.T, mono, exe string, srv *server.Server, pipe string, env []string, dotnetID string, opts ...statebus.Option) {
	g := dial(t, srv, "go-machine", opts...)
	traced := ""
	if len(opts) > 0 {
		traced = `,"traceparent":"00-[0-9a-f]{32}-[0-9a-f]{16}-01"`
	}
	pings := make(chan statebus.Event, 1)
	g.OnEvent("PING", func(e statebus.Event) {
		select {
		case pings <- e:
		default:
		}
		err := g.SendEvent(context.Background(), e.Source, "PONG", map[string]any{"Message": "Hello from Go"})
		if err != nil && !errors.Is(err, statebus.ErrNotConnected) {
			t.Errorf("sending PONG: %v", err)
		}
	})

	runCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, mono, exe, pipe, dotnetID, "go-machine")
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mono InteropClient.exe %s: %v\nstdout:\n%s\nstderr:\n%s", pipe, err, &stdout, &stderr)
	}
	t.Logf(".NET client stderr:\n%s", &stderr)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nstdout:\n%s\nstderr:\n%s", append(args, &stdout, &stderr)...)
	}

	out := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(out) != 2 {
		fail(".NET client printed %d lines, want 2 (PONG, error)", len(out))
	}
	pong := regexp.MustCompile(`^\{"Success":true,"Data":\{"SourceMachineId":"go-machine","TargetMachineId":"` +
		regexp.QuoteMeta(dotnetID) + `","EventName":"PONG","Payload":\{"Message":"Hello from Go"\},` +
		`"Timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"` + traced + `\},"Error":null\}$`)
	if !pong.MatchString(out[0]) {
		fail("PONG line as .NET received it:\n%s\nwant it to match\n%s", out[0], pong)
	}
	wantErr := `{"Success":false,"Data":null,"Error":"Target machine not connected: no-such-machine"}`
	if out[1] != wantErr {
		fail("error line as .NET received it:\n%s\nwant\n%s", out[1], wantErr)
	}

	select {
	case e := <-pings:
		if e.Source != dotnetID || e.Target != "go-machine" || e.Name != "PING" ||
			string(e.Payload) != `{"Message":"Hello from .NET"}` || time.Since(e.Timestamp) > time.Minute {
			t.Fatalf("Go received %+v (payload %s)", e, e.Payload)
		}
	default:
		fail("the .NET client got its PONG but the Go client recorded no PING")
	}
}
