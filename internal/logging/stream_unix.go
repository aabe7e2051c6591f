//go:build unix

package logging

import (
	"io"
	"os"
	"syscall"
)

// StreamID returns the device and inode of the file behind w, as systemd
// writes them in JOURNAL_STREAM; ok is false when w is not a file.
func StreamID(w io.Writer) (dev, ino uint64, ok bool) {
	f, isFile := w.(*os.File)
	if !isFile {
		return 0, 0, false
	}
	fi, err := f.Stat() // fstat(2), without Fd's switch to blocking mode
	if err != nil {
		return 0, 0, false
	}
	st, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true
}
