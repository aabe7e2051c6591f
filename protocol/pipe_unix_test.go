//go:build !windows

package protocol

import "testing"

func TestPipePath(t *testing.T) {
	t.Setenv("TMPDIR", "")
	if got := PipePath(""); got != "/tmp/CoreFxPipe_XStateNet.MessageBus" {
		t.Errorf("default: %s", got)
	}
	if got := PipePath("/run/x.sock"); got != "/run/x.sock" {
		t.Errorf("absolute: %s", got)
	}
	t.Setenv("TMPDIR", "/var/tmp/")
	if got := PipePath("Foo"); got != "/var/tmp/CoreFxPipe_Foo" {
		t.Errorf("TMPDIR: %s", got)
	}
}
