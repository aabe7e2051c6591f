package protocol

import "strings"

// pipePrefix starts every local named pipe's path.
const pipePrefix = `\\.\pipe\`

// PipePath maps a pipe name to the named pipe path .NET uses for it on
// Windows: \\.\pipe\NAME. A name that already is a pipe path (\\.\pipe\...
// or \\server\pipe\...) is used as is.
func PipePath(name string) string {
	if name == "" {
		name = DefaultPipeName
	}
	if strings.HasPrefix(name, `\\`) {
		return name
	}
	return pipePrefix + name
}
