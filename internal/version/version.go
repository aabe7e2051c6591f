// Package version says which build of statebus this is.
package version

import (
	"fmt"
	"runtime/debug"
)

// Version is set at build time with -ldflags "-X statebus/internal/version.Version=v1.2.3".
var Version = "dev"

// String returns "VERSION (commit REV)" with the VCS revision Go stamped
// into the binary, when it did.
func String() string {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			}
		}
	}
	return fmt.Sprintf("%s (commit %s)", Version, rev)
}
