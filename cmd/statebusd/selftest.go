package main

import (
	"context"
	"io"
	"os"

	"github.com/statebus/statebus/internal/selftest"
)

// selfTest runs the self-test, as the original service's --self-test
// does, stopping early if a signal arrives.
func selfTest(stdout io.Writer, sigs <-chan os.Signal) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	f, ok := stdout.(*os.File)
	color := false
	if ok {
		fi, err := f.Stat()
		color = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	if !selftest.Run(ctx, stdout, selftest.Options{Color: color}) {
		return 1
	}
	return 0
}
