package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"

	"github.com/statebus/statebus/internal/server"
)

// The original service's names: the service (install-service.ps1's
// default -ServiceName) and the Application event log source it logs
// under.
const (
	serviceName   = "XStateNetMessageBus"
	eventSource   = "XStateNet.InterProcess"
	serviceTitle  = "XStateNet InterProcess Message Bus"
	serviceDetail = "statebus: the XStateNet InterProcess message bus (named pipe)"
)

// serviceArg, first on the command line, says statebusd runs as a
// service: statebusd install puts it there, so that the service does not
// depend on guessing from its parent process (svc.IsWindowsService), which
// is how a service created with sc.exe without it is recognised.
const serviceArg = "service"

// runService runs statebusd under the Windows service manager when it
// started it (statebusd install, or sc.exe create): Stop and Shutdown
// requests stop the bus as SIGTERM does, and logs go to the Application
// event log under the source XStateNet.InterProcess. From a console it
// returns ok false and statebusd runs as a console program.
func runService(args []string) (code int, ok bool) {
	if len(args) > 0 && args[0] == serviceArg {
		args = args[1:]
	} else if isService, err := svc.IsWindowsService(); err != nil || !isService {
		return 0, false
	}
	s := &service{args: args}
	if err := svc.Run(serviceName, s); err != nil {
		fmt.Fprintf(os.Stderr, "statebusd: not started by the service manager (%v); from a console run statebusd without %q\n", err, serviceArg)
		return 1, true
	}
	return s.code, true
}

type service struct {
	args []string
	code int
}

// Execute is the service's life: start the bus, report Running once it
// listens, turn Stop and Shutdown into a graceful stop.
func (s *service) Execute(_ []string, reqs <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	var logOut io.Writer = io.Discard
	if el, err := eventlog.Open(eventSource); err == nil {
		defer el.Close()
		logOut = eventLog{el}
	}
	sigs := make(chan os.Signal, 1)
	started := make(chan *server.Server, 1)
	done := make(chan int, 1)
	go func() { done <- run(s.args, os.Getenv, io.Discard, logOut, sigs, started) }()
	for {
		select {
		case <-started:
			status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
		case r := <-reqs:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending}
				select {
				case sigs <- os.Interrupt:
				default: // already stopping
				}
			}
		case s.code = <-done:
			status <- svc.Status{State: svc.StopPending}
			if s.code != 0 {
				return true, uint32(s.code) // service-specific exit code
			}
			return false, 0
		}
	}
}

// eventLog writes each log record as one event of the type its level
// calls for. Lines written before logging starts (start-up errors) are
// errors.
type eventLog struct{ l *eventlog.Log }

func (e eventLog) WriteLevel(level slog.Level, p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\r\n")
	var err error
	switch {
	case level >= slog.LevelError:
		err = e.l.Error(1, msg)
	case level >= slog.LevelWarn:
		err = e.l.Warning(1, msg)
	default:
		err = e.l.Info(1, msg)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (e eventLog) Write(p []byte) (int, error) { return e.WriteLevel(slog.LevelError, p) }
