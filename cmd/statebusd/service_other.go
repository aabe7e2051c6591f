//go:build !windows

package main

import (
	"fmt"
	"io"
)

// runService runs statebusd as a Windows service; elsewhere there is no
// such thing, and it says so by returning ok false.
func runService(args []string) (code int, ok bool) { return 0, false }

// manageService is statebusd install and uninstall, which install a
// Windows service; elsewhere they say what to use instead.
func manageService(cmd string, _ []string, _, stderr io.Writer) int {
	fmt.Fprintf(stderr, "statebusd %s: installs a Windows service; on Linux use the systemd units instead (make install; see docs/operations.md)\n", cmd)
	return 2
}
