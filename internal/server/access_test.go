//go:build linux

package server_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// accessChild runs in a child process under another uid: it sends each
// line of $STATEBUS_ACCESS_LINES and prints one response per line.
func accessChild() {
	network := "unix"
	if os.Getenv("STATEBUS_ACCESS_TCP") == "1" {
		network = "tcp"
	}
	c, err := net.Dial(network, os.Getenv("STATEBUS_ACCESS_SOCKET"))
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	r := bufio.NewReader(c)
	for _, line := range strings.Split(os.Getenv("STATEBUS_ACCESS_LINES"), "\n") {
		c.Write([]byte(line + "\n"))
		resp, err := r.ReadString('\n')
		fmt.Print(resp)
		if err != nil {
			fmt.Println("closed:", err)
			return
		}
	}
	if os.Getenv("STATEBUS_ACCESS_SECOND") == "1" {
		// A second connection while the first is still open.
		c2, err := net.Dial("unix", os.Getenv("STATEBUS_ACCESS_SOCKET"))
		if err != nil {
			fmt.Println("dial:", err)
			return
		}
		resp, _ := bufio.NewReader(c2).ReadString('\n')
		fmt.Print(resp)
	}
}

// asNobody runs the test binary as uid/gid 65534 talking to path, and
// returns what it printed.
func asNobody(t *testing.T, path string, lines ...string) string {
	t.Helper()
	return asNobodyEnv(t, path, nil, lines...)
}

// asNobodyEnv is asNobody with extra environment for the child.
func asNobodyEnv(t *testing.T, path string, env []string, lines ...string) string {
	t.Helper()
	// The child must reach the binary and the socket as nobody.
	dir, err := os.MkdirTemp("", "sbacc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "child")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "STATEBUS_ACCESS_CHILD=1", "STATEBUS_ACCESS_SOCKET="+path,
		"STATEBUS_ACCESS_LINES="+strings.Join(lines, "\n"))
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return string(out)
}

func accessServer(t *testing.T, p access.Policy) *server.Server {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client under a second uid")
	}
	srv := bustest.Start(t, func(c *server.Config) { c.SocketMode = 0o666; c.Access = p })
	os.Chmod(filepath.Dir(srv.Addr()), 0o755)
	return srv
}

func TestAccessDefaultRefusesOtherUsers(t *testing.T) {
	srv := accessServer(t, access.Policy{})
	out := asNobody(t, srv.Addr(), `{"Type":3,"Payload":"intruder"}`)
	want := `{"Success":false,"Data":null,"Error":"Access denied: uid 65534 is not allowed to connect"}`
	if !strings.HasPrefix(out, want+"\n") {
		t.Fatalf("got %q, want %q then a closed connection", out, want)
	}
	if h := srv.Health(); h.RegisteredMachines != 0 {
		t.Fatalf("refused peer registered: %+v", h)
	}
}

func TestAccessRules(t *testing.T) {
	srv := accessServer(t, access.Policy{
		AllowUIDs: []int{65534},
		Rules:     []access.Rule{{UID: 65534, Register: []string{"sensor-*"}, SendTo: []string{"controller"}}},
	})
	dialRaw(t, srv).Connect("controller")
	dialRaw(t, srv).Connect("other")
	out := asNobody(t, srv.Addr(),
		`{"Type":3,"Payload":"admin"}`,
		`{"Type":3,"Payload":"sensor-1"}`,
		`{"Type":2,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"other","EventName":"E"}}`,
		`{"Type":2,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"*","EventName":"E"}}`,
		`{"Type":2,"Payload":{"SourceMachineId":"sensor-1","TargetMachineId":"controller","EventName":"E"}}`,
	)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		`{"Success":false,"Data":null,"Error":"Access denied: uid 65534 may not register admin"}`,
		`{"Success":true,"Data":{"MachineId":"sensor-1","SubscribedAt":`,
		`{"Success":false,"Data":null,"Error":"Access denied: uid 65534 may not send to other"}`,
		`{"Success":false,"Data":null,"Error":"Access denied: uid 65534 may not send to *"}`,
		`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"controller"},"Error":null}`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), out)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d: got %s\nwant %s", i, lines[i], want[i])
		}
	}
	// The registry shows the kernel's uid for the child.
	for _, m := range srv.Machines() {
		if m.MachineID == "sensor-1" && m.PeerUID != 65534 {
			t.Errorf("registry uid %d, want 65534", m.PeerUID)
		}
	}
}

func TestAccessWatch(t *testing.T) {
	srv := accessServer(t, access.Policy{AllowUIDs: []int{65534}, Rules: []access.Rule{{UID: 65534}}})
	out := asNobody(t, srv.Addr(), `{"Type":"Watch","Payload":{"EventName":"*"}}`)
	if want := `{"Success":false,"Data":null,"Error":"Access denied: uid 65534 may not watch events"}` + "\n"; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

// A restricted user joins only the groups its rule allows (Join patterns,
// else Register patterns), and sees in the registry only its own ids and
// those it may send to.
func TestAccessGroupsAndRegistry(t *testing.T) {
	srv := accessServer(t, access.Policy{
		AllowUIDs: []int{65534},
		Rules: []access.Rule{{UID: 65534, Register: []string{"sensor-*"}, SendTo: []string{"controller"},
			Join: []string{"sensors"}}},
	})
	dialRaw(t, srv).Connect("controller")
	dialRaw(t, srv).Connect("admin-console")
	out := asNobody(t, srv.Addr(),
		`{"Type":3,"Payload":"sensor-1"}`,
		`{"Type":103,"Payload":{"Group":"admins"}}`,
		`{"Type":103,"Payload":{"Group":"sensors"}}`,
		`{"Type":101}`,
	)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		`{"Success":true,"Data":{"MachineId":"sensor-1","SubscribedAt":`,
		`{"Success":false,"Data":null,"Error":"Access denied: uid 65534 may not join group admins"}`,
		`{"Success":true,"Data":null,"Error":null}`,
		`{"Success":true,"Data":[{"MachineId":"controller",`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), out)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d: got %s\nwant %s", i, lines[i], want[i])
		}
	}
	if strings.Contains(lines[3], "admin-console") || !strings.Contains(lines[3], `"MachineId":"sensor-1"`) {
		t.Errorf("registry seen by the restricted user: %s", lines[3])
	}
}

// A reserved id can be taken only by its user, even when that user's
// machine is gone and another user connects first.
func TestAccessReservedIDs(t *testing.T) {
	srv := accessServer(t, access.Policy{
		AllowUIDs: []int{65534},
		Reserve:   []access.Reservation{{UID: 0, IDs: []string{"robot-*"}}, {UID: 65534, IDs: []string{"nobody-*"}}},
	})
	out := asNobody(t, srv.Addr(),
		`{"Type":3,"Payload":"robot-1"}`,
		`{"Type":3,"Payload":"nobody-1"}`,
	)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != `{"Success":false,"Data":null,"Error":"Access denied: machine id robot-1 is reserved for uid 0"}` ||
		!strings.HasPrefix(lines[1], `{"Success":true,"Data":{"MachineId":"nobody-1"`) {
		t.Fatalf("got:\n%s", out)
	}
	dialRaw(t, srv).Connect("robot-1") // root's own
	r := dialRaw(t, srv)
	r.Send(`{"Type":3,"Payload":"nobody-2"}`)
	r.Expect(`{"Success":false,"Data":null,"Error":"Access denied: machine id nobody-2 is reserved for uid 65534"}`)
}

// Another user's socket on the configured path is never served beside or
// replaced, live or stale: that user may be impersonating the bus.
func TestListenRefusesAnotherUsersSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a socket file to another uid")
	}
	path := bustest.SocketPath(t)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // stale
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = server.Listen(path, 0o660)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534, not to statebusd's uid 0: another user may be impersonating the bus") {
		t.Fatalf("Listen over another user's socket: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the other user's socket was removed: %v", err)
	}
}

// One local user cannot take every connection: past MaxConnectionsPerUid
// its next connection is refused and closed; root is not limited.
func TestConnectionsPerUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client under a second uid")
	}
	srv2 := bustest.Start(t, func(c *server.Config) {
		c.SocketMode = 0o666
		c.MaxConnectionsPerUID = 1
		c.Access = access.Policy{AllowUIDs: []int{65534}}
	})
	os.Chmod(filepath.Dir(srv2.Addr()), 0o755)
	out := asNobodyEnv(t, srv2.Addr(), []string{"STATEBUS_ACCESS_SECOND=1"}, `{"Type":100,"Id":1}`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := `{"Success":false,"Data":null,"Error":"Limit reached: 1 connections per user (MaxConnectionsPerUid) for uid 65534; close one first"}`
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"Success":true`) || lines[1] != want {
		t.Fatalf("got:\n%s", out)
	}
	if st := srv2.Stats(); st.ConnectionsRefusedPerUID != 1 {
		t.Fatalf("refused per uid: %d", st.ConnectionsRefusedPerUID)
	}
	dialRaw(t, srv2).Connect("root-1") // root: not limited
	dialRaw(t, srv2).Connect("root-2")
}
