package systemd

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// Reloading is the state to send when a reload begins: RELOADING=1 with
// the CLOCK_MONOTONIC timestamp systemd (Type=notify-reload) asks for.
func Reloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1"
	}
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}
