package main

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/windows"
)

// ownGroup starts cmd in a new process group, whose id is its pid.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP}
}

// terminate sends CTRL_BREAK_EVENT to cmd's process group (ownGroup):
// Go delivers it to statebusd as os.Interrupt, on which it stops as on
// SIGTERM. There is no SIGTERM on Windows.
func terminate(cmd *exec.Cmd) error {
	return windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(cmd.Process.Pid))
}

// alreadyServing is what a second statebusd on the pipe path says.
func alreadyServing(path string) string {
	return "cannot listen on " + path + ": "
}
