package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/statebus/statebus/internal/config"
)

// manageService is statebusd install and statebusd uninstall: what the
// original's install-service.ps1 and uninstall-service.ps1 do with sc.exe,
// from the binary. install registers this executable as a service that
// starts with Windows and runs statebusd with the flags after "--", and
// registers the event log source it logs under; uninstall stops the
// service, deletes it and removes the source.
func manageService(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("statebusd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("service-name", serviceName, "the service's name")
	start := fs.String("start", "auto", "install: when it starts: auto (with Windows), manual or disabled")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: statebusd install [--service-name NAME] [--start auto|manual|disabled] [-- statebusd flags]\n"+
			"       statebusd uninstall [--service-name NAME]\n\n"+
			"Run from an elevated prompt. install registers this executable as the Windows service NAME\n"+
			"(default %s) running statebusd with the flags after --, e.g.\n"+
			"  statebusd install -- --config C:\\statebus\\appsettings.json\n"+
			"and the Application event log source %s; uninstall stops and deletes the service\n"+
			"and removes the source.\n", serviceName, eventSource)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	if cmd == "install" {
		err = install(*name, *start, fs.Args(), stdout)
	} else if len(fs.Args()) > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Args()[0])
	} else {
		err = uninstall(*name, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "statebusd %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func install(name, start string, args []string, stdout io.Writer) error {
	startType, ok := map[string]uint32{"auto": mgr.StartAutomatic, "manual": mgr.StartManual, "disabled": mgr.StartDisabled}[start]
	if !ok {
		return fmt.Errorf("--start %q: want auto, manual or disabled", start)
	}
	// The service runs with these flags from C:\Windows\System32: check
	// them now, and make a relative --config absolute.
	args = absConfig(args)
	if _, err := config.Load(args, func(string) string { return "" }); err != nil {
		return fmt.Errorf("the service's flags do not load: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot tell where this executable is: %w", err)
	}
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	if s, err := m.OpenService(name); err == nil {
		s.Close()
		return fmt.Errorf("a service named %s already exists: statebusd uninstall --service-name %s first, or choose another --service-name", name, name)
	}
	s, err := m.CreateService(name, exe, mgr.Config{
		DisplayName: serviceTitle,
		Description: serviceDetail,
		StartType:   startType,
	}, append([]string{serviceArg}, args...)...)
	if err != nil {
		return fmt.Errorf("creating the service %s: %w", name, err)
	}
	defer s.Close()
	// Restart after a crash, as systemd's Restart=on-failure does.
	if err := s.SetRecoveryActions([]mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
	}, 24*60*60); err != nil {
		fmt.Fprintf(stdout, "warning: the service will not restart after a crash: %v\n", err)
	}
	if err := eventlog.InstallAsEventCreate(eventSource, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil &&
		!strings.Contains(err.Error(), "exists") {
		s.Delete()
		return fmt.Errorf("registering the event log source %s: %w (the service was not installed)", eventSource, err)
	}
	fmt.Fprintf(stdout, "installed the service %s: %s %s %s\nstart it with: sc.exe start %s\n",
		name, exe, serviceArg, strings.Join(args, " "), name)
	return nil
}

func uninstall(name string, stdout io.Writer) error {
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("no service named %s: %w", name, err)
	}
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("stopping the service %s: %w", name, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for st.State != svc.Stopped {
			if time.Now().After(deadline) {
				return fmt.Errorf("the service %s did not stop within 30 s; stop it (sc.exe stop %s) and try again", name, name)
			}
			time.Sleep(300 * time.Millisecond) // the service manager has no wait call
			if st, err = s.Query(); err != nil {
				return fmt.Errorf("querying the service %s: %w", name, err)
			}
		}
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("deleting the service %s: %w", name, err)
	}
	if err := eventlog.Remove(eventSource); err != nil {
		fmt.Fprintf(stdout, "warning: the event log source %s stays: %v\n", eventSource, err)
	}
	fmt.Fprintf(stdout, "uninstalled the service %s\n", name)
	return nil
}

// connect reaches the service manager, or says why not.
func connect() (*mgr.Mgr, error) {
	m, err := mgr.Connect()
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return nil, errors.New("the service manager refused access: run this from an elevated prompt (Run as administrator)")
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach the service manager: %w", err)
	}
	return m, nil
}

// absConfig makes the path of --config (or -config, --config=PATH)
// absolute.
func absConfig(args []string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		switch {
		case (a == "--config" || a == "-config") && i+1 < len(out):
			if p, err := filepath.Abs(out[i+1]); err == nil {
				out[i+1] = p
			}
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			k, v, _ := strings.Cut(a, "=")
			if p, err := filepath.Abs(v); err == nil {
				out[i] = k + "=" + p
			}
		}
	}
	return out
}
