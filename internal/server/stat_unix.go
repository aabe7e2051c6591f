//go:build unix

package server

import (
	"os"
	"syscall"
)

// sysStat returns the group owning a file.
func sysStat(fi os.FileInfo) (gid int, ok bool) {
	if fi == nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Gid), true
}
