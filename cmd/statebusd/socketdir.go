package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// runDir is the directory the packaged configuration puts the socket in;
// under systemd RuntimeDirectory=statebus creates it.
const runDir = "/run/statebus"

// ensureSocketDir makes the directory of the socket at path exist when it
// is statebusd's to create: under /run/statebus, or a directory whose
// parent exists (so the operator named a new place for this bus, not a
// mistyped tree). It is created 0755 and owned by statebusd's user.
// Otherwise the error says which directory is missing and what to do,
// instead of listen's "bind: no such file or directory".
func ensureSocketDir(path string, log *slog.Logger) error {
	if runtime.GOOS == "windows" {
		return nil // named pipes have no directory
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return nil // there, or a problem listen reports better
	}
	parent := filepath.Dir(dir)
	var err error
	switch {
	case dir == runDir || strings.HasPrefix(dir, runDir+"/"):
		err = os.MkdirAll(dir, 0o755)
	case isDir(parent):
		err = os.Mkdir(dir, 0o755)
	default:
		return fmt.Errorf("the socket's directory %s does not exist, nor does its parent %s: "+
			"create it (mkdir -p %s) or choose a PipeName in an existing directory", dir, parent, dir)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755) // whatever the umask
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("the socket's directory %s does not exist and statebusd cannot create it (%v): "+
			"create it for statebusd's user (sudo install -d -m 0755 -o %s %s), run statebusd under systemd "+
			"(statebusd.service creates %s), or choose a PipeName in an existing directory",
			dir, err, userName(), dir, runDir)
	}
	log.Info("created the socket's directory", "dir", dir, "mode", "0755")
	return nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// userName is how to name statebusd's user to install(1).
func userName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprint(os.Geteuid())
}
