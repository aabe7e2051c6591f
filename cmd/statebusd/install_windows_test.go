package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallArguments: what statebusd install refuses before it touches
// the service manager, and the relative --config it makes absolute for a
// service that starts in C:\Windows\System32.
func TestInstallArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--start", "sometimes"}, `--start "sometimes": want auto, manual or disabled`},
		{[]string{"--", "--max-connections", "many"}, "the service's flags do not load: flag --max-connections"},
		{[]string{"--", "--pipe-security", "everyone"}, `the service's flags do not load: config: PipeSecurity "everyone"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"install"}, tc.args...), os.Getenv, &stdout, &stderr, make(chan os.Signal), nil)
		if code != 1 || !strings.Contains(stderr.String(), "statebusd install: "+tc.want) {
			t.Errorf("install %v: exit %d, stderr %q, want %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	wd, _ := os.Getwd()
	want := filepath.Join(wd, "bus.json")
	got := absConfig([]string{"--config", "bus.json", "--config=bus.json", "--pipe-name", "bus.json"})
	if got[1] != want || got[2] != "--config="+want || got[4] != "bus.json" {
		t.Errorf("absConfig: %q, want %s for --config only", got, want)
	}
}
