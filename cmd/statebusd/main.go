// Command statebusd is the statebus message bus service. With no
// configuration it listens where XStateNet .NET clients look for the
// XStateNet.MessageBus pipe: /tmp/CoreFxPipe_XStateNet.MessageBus, and
// serves its monitoring endpoint on 127.0.0.1:9555.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/statebus/statebus/internal/config"
	"github.com/statebus/statebus/internal/server"
	"github.com/statebus/statebus/internal/version"
)

func main() {
	if code, ok := runService(os.Args[1:]); ok { // as a Windows service
		os.Exit(code)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, sigs, nil))
}

// run is statebusd's main, testable in-process. It serves until SIGINT or
// SIGTERM arrives on sigs, reloading on SIGHUP, and reports the server
// once it listens on started.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer,
	sigs <-chan os.Signal, started chan<- *server.Server) int {
	if len(args) > 0 && (args[0] == "install" || args[0] == "uninstall") {
		return manageService(args[0], args[1:], stdout, stderr)
	}
	st, err := config.Load(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		config.Usage(stdout)
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
	d, err := start(st, args, getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "statebusd: %v\n", err)
		return 1
	}
	if started != nil {
		started <- d.srv
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			d.reload()
			continue
		}
		return d.stop(sig)
	}
	return d.stop(nil)
}
