// Command statebusd is the statebus message bus service. With no
// configuration it listens where XStateNet .NET clients look for the
// XStateNet.MessageBus pipe: /tmp/CoreFxPipe_XStateNet.MessageBus.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"statebus/internal/config"
	"statebus/internal/selftest"
	"statebus/internal/server"
	"statebus/internal/version"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, sigs, nil))
}

// run is statebusd's main, testable in-process. It serves until a signal
// arrives on sigs, and reports the server once it listens on started.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer,
	sigs <-chan os.Signal, started chan<- *server.Server) int {
	st, err := config.Load(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "statebusd: %v\n", err)
		return 2
	}
	if st.Version {
		fmt.Fprintf(stdout, "statebusd %s\n", version.String())
		return 0
	}
	if st.SelfTest {
		return selfTest(stdout, sigs)
	}
	opts := &slog.HandlerOptions{Level: st.LogLevel}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if st.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	log := slog.New(h)
	st.Server.Logger = log

	srv, err := server.New(st.Server)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		fmt.Fprintf(stderr, "statebusd: %v\n", err)
		return 1
	}
	if started != nil {
		started <- srv
	}
	sig := <-sigs
	log.Info("shutting down", "signal", sig.String())
	ctx, cancel := context.WithTimeout(context.Background(), st.Server.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

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
