//go:build !unix

package systemd

import "net"

// Listeners returns nothing: socket activation is a systemd (Unix) notion.
func Listeners(getenv func(string) string, pid int) ([]net.Listener, error) { return nil, nil }
