//go:build !unix

package server

import "os"

// sysStat: file groups are a Unix notion.
func sysStat(fi os.FileInfo) (gid int, ok bool) { return 0, false }
