package bustest

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// DotNetClient builds the C# interop client (testdata/dotnet/InteropClient.cs
// below root, the checkout) with Mono's mcs and returns the mono program
// and the built executable; it skips the test when Mono is not installed.
// The client talks to a bus as XStateNet's InterProcessClient does:
// InteropClient.exe PIPE MY-ID GO-ID pings GO-ID and prints the PONG line,
// then the error line of an event to a machine that does not exist.
func DotNetClient(t testing.TB, root string) (mono, exe string) {
	t.Helper()
	mcs, err := exec.LookPath("mcs")
	if err != nil {
		t.Skipf("mcs not found: install mono-mcs mono-runtime libmono-system-core4.0-cil to run the .NET interop test")
	}
	mono, err = exec.LookPath("mono")
	if err != nil {
		t.Skipf("mono not found: install mono-runtime to run the .NET interop test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exe = filepath.Join(TempDir(t), "InteropClient.exe")
	build := exec.CommandContext(ctx, mcs, "-out:"+exe, "-r:System.Core.dll", filepath.Join(root, "testdata/dotnet/InteropClient.cs"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("mcs: %v\n%s", err, out)
	}
	return mono, exe
}
