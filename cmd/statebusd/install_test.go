package main

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestInstallElsewhere: statebusd install and uninstall manage a Windows
// service; on Unix they refuse, naming what to use instead.
func TestInstallElsewhere(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix only: on Windows install registers a real service (packaging/wine/smoke.sh runs it under Wine's service manager)")
	}
	for _, cmd := range []string{"install", "uninstall"} {
		var stdout, stderr bytes.Buffer
		code := run([]string{cmd}, func(string) string { return "" }, &stdout, &stderr, make(chan os.Signal), nil)
		if code != 2 || !strings.Contains(stderr.String(), "statebusd "+cmd+": installs a Windows service; on Linux use the systemd units") {
			t.Errorf("statebusd %s: exit %d, stderr %q", cmd, code, stderr.String())
		}
	}
}
