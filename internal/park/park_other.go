//go:build !linux

package park

import (
	"errors"
	"syscall"
)

// Parker parks nothing on this platform: New fails, and a nil Parker's
// Park reports false.
type Parker struct{ table }

// New reports that this platform cannot park readers.
func New() (*Parker, error) { return nil, errors.New("park: only on Linux") }

// Park reports false: the reader goes on waiting in its read.
func (p *Parker) Park(*Slot, syscall.RawConn) bool { return false }

// Close does nothing.
func (p *Parker) Close() {}
