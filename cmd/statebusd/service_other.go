//go:build !windows

package main

// runService runs statebusd as a Windows service; elsewhere there is no
// such thing, and it says so by returning ok false.
func runService(args []string) (code int, ok bool) { return 0, false }
