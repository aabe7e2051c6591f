//go:build !windows

package main

import (
	"os/exec"
	"syscall"
)

// ownGroup does nothing off Windows: terminate signals the process.
func ownGroup(*exec.Cmd) {}

// terminate sends SIGTERM.
func terminate(cmd *exec.Cmd) error { return cmd.Process.Signal(syscall.SIGTERM) }

// alreadyServing is what a second statebusd on path says.
func alreadyServing(path string) string { return "another statebusd is already serving " + path }
