//go:build unix

package durable

import "syscall"

// freeBytes returns the bytes available to unprivileged users on the file
// system holding dir.
func freeBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
