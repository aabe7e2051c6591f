//go:build !linux

package systemd

// Reloading is the state to send when a reload begins.
func Reloading() string { return "RELOADING=1" }
