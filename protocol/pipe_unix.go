//go:build !windows

package protocol

import (
	"os"
	"path/filepath"
)

// PipePath maps a pipe name to the Unix socket path .NET uses for it on
// Linux and macOS: an absolute path is used as is, any other name becomes
// $TMPDIR/CoreFxPipe_NAME (/tmp when TMPDIR is unset).
func PipePath(name string) string {
	if name == "" {
		name = DefaultPipeName
	}
	if filepath.IsAbs(name) {
		return name
	}
	dir := os.Getenv("TMPDIR")
	if dir == "" {
		dir = "/tmp"
	}
	return filepath.Join(dir, "CoreFxPipe_"+name)
}
