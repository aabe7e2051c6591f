package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/statebus/statebus"
)

func init() {
	commands["machines"] = command{"list the registered machines", runMachines}
}

func runMachines(ctx context.Context, e *env, args []string) int {
	f := newFlags(e, "machines", "[flags]",
		`Lists the machines registered with the service: the id, the process id the
client claimed and the one the kernel reports for its connection, the user id
(on Windows the user's SID), the process name, when it registered and how long its connection has been up,
for clients that connected over TCP their address (and, over TLS, their
certificate's name instead of a pid and uid), and, for state machines hosted
by an orchestrator, their current state.
It connects without registering a machine id of its own.`,
		`statebus machines
statebus machines --json | jq -r '.[].MachineId'`)
	timeout := f.Duration("timeout", 10*time.Second, "how long to wait for the service")
	if _, code, ok := f.parse(args, 0, 0); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ms, err := statebus.Machines(ctx, f.bus()...)
	if err != nil {
		return failure(e, f, err)
	}
	slices.SortFunc(ms, func(a, b statebus.MachineInfo) int { return strings.Compare(a.MachineID, b.MachineID) })
	if f.json {
		if ms == nil {
			ms = []statebus.MachineInfo{}
		}
		writeJSON(e.stdout, ms)
		return 0
	}
	if len(ms) == 0 {
		fmt.Fprintf(e.stdout, "No machines are registered on %s.\n", f.socket())
		return 0
	}
	now := time.Now()
	// A STATE column only when some machine has one (an orchestrated state
	// machine): plain clients' listings stay as they were.
	states := slices.ContainsFunc(ms, func(m statebus.MachineInfo) bool { return m.State != "" })
	// A REMOTE column likewise only when some client came over TCP.
	remote := slices.ContainsFunc(ms, func(m statebus.MachineInfo) bool { return m.PeerAddress != "" })
	// A DAEMON column when the bus is a federation (MessageBus:Cluster).
	daemons := slices.ContainsFunc(ms, func(m statebus.MachineInfo) bool { return m.Daemon != "" })
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "MACHINE ID\tCLAIMED PID\tKERNEL PID\tUID\tPROCESS\tREGISTERED AT\tCONNECTED FOR")
	if remote {
		fmt.Fprint(tw, "\tREMOTE")
	}
	if states {
		fmt.Fprint(tw, "\tSTATE")
	}
	if daemons {
		fmt.Fprint(tw, "\tDAEMON")
	}
	fmt.Fprintln(tw)
	for _, m := range ms {
		kpid, uid := "-", "-"
		if m.PeerPID >= 0 {
			kpid = fmt.Sprint(m.PeerPID)
		}
		switch {
		case m.PeerUID >= 0: // also over plain TCP, where the pid is unknown
			uid = fmt.Sprint(m.PeerUID)
		case m.PeerSID != "": // a Windows user
			uid = m.PeerSID
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s", m.MachineID, m.ProcessID, kpid, uid,
			orDash(m.ProcessName), m.RegisteredAt.Local().Format("2006-01-02 15:04:05"), connectedFor(now, m.ConnectedAt))
		if remote {
			fmt.Fprintf(tw, "\t%s", remotePeer(m))
		}
		if states {
			fmt.Fprintf(tw, "\t%s", orDash(m.State))
		}
		if daemons {
			fmt.Fprintf(tw, "\t%s@%s", m.Daemon, m.Host)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	return 0
}

// remotePeer says who a TCP client is: its certificate's name (TLS) and
// its address; "-" for a client of the socket.
func remotePeer(m statebus.MachineInfo) string {
	switch {
	case m.PeerCert != "":
		return m.PeerCert + " at " + m.PeerAddress
	case m.PeerAddress != "":
		return m.PeerAddress
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// connectedFor is how long a connection has been up, "-" when the service
// does not know (an id on another daemon of a federation that did not say).
func connectedFor(now, at time.Time) string {
	if at.IsZero() {
		return "-"
	}
	return age(now.Sub(at))
}

// age formats a duration for people: 350ms, 42s, 3m12s, 5h3m.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}
