//go:build !unix

package logging

import "io"

// StreamID returns the device and inode of the file behind w, as systemd
// writes them in JOURNAL_STREAM; without systemd, ok is always false.
func StreamID(w io.Writer) (dev, ino uint64, ok bool) { return 0, 0, false }
