package orchestrator_test

import (
	"bufio"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/orchestrator"
)

// TestDotNetClientTalksToMachine: a client that writes the bytes
// XStateNet's .NET InterProcessClient writes (a BOM in a write of its own,
// Register and Subscribe as it words them, a SendEvent) sends PING to a
// Go-hosted machine and reads the machine's PONG, in the form the .NET
// client parses, and the acknowledgement. Nothing in its traffic is new.
func TestDotNetClientTalksToMachine(t *testing.T) {
	srv := bustest.Start(t, nil)
	o := newOrch(t, orchestrator.WithBus(statebus.WithPipeName(srv.Addr())))
	if err := o.Register(ctxT(t), "pong", load(t, "pong.json", pongImpl)); err != nil {
		t.Fatal(err)
	}
	c, err := busaddr.Dial(context.Background(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	send := func(line string) {
		t.Helper()
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (%q)", err, line)
		}
		return strings.TrimSuffix(line, "\n")
	}
	const ts = `"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"`
	match := func(line, re string) bool { return regexp.MustCompile("^" + re + "$").MatchString(line) }

	c.Write([]byte{0xEF, 0xBB, 0xBF})
	send(`{"Type":0,"Payload":{"MachineId":"dotnet","ProcessName":"TestClient","ProcessId":4242,"RegisteredAt":"2025-10-03T17:16:09.8123456Z"}}`)
	if l := read(); !match(l, `\{"Success":true,"Data":\{"MachineId":"dotnet","RegisteredAt":`+ts+`\},"Error":null\}`) {
		t.Fatal(l)
	}
	send(`{"Type":3,"Payload":"dotnet"}`)
	if l := read(); !match(l, `\{"Success":true,"Data":\{"MachineId":"dotnet","SubscribedAt":`+ts+`\},"Error":null\}`) {
		t.Fatal(l)
	}
	for i := range 3 {
		send(`{"Type":2,"Payload":{"SourceMachineId":"dotnet","TargetMachineId":"pong","EventName":"PING","Payload":{"Message":"Hello from .NET"},"Timestamp":"2025-10-03T17:16:09.8"}}`)
		ack := `{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"pong"},"Error":null}`
		pong := `\{"Success":true,"Data":\{"SourceMachineId":"pong","TargetMachineId":"dotnet","EventName":"PONG","Payload":\{"Message":"Hello from \.NET"\},"Timestamp":` + ts + `\},"Error":null\}`
		a, b := read(), read()
		if !(a == ack && match(b, pong) || b == ack && match(a, pong)) {
			t.Fatalf("PING %d: the .NET client read\n%s\n%s", i, a, b)
		}
	}
	if n := o.Machine("pong").Context()["count"]; num(n) != 3 {
		t.Fatalf("pong counted %v", n)
	}
	// The registry shows the machine's state; the .NET client's entry has
	// none.
	eventually(t, 10*time.Second, func() bool {
		st, _ := registryState(t, srv.Addr(), "pong")
		return st == "#pong.ponging"
	}, "pong's state never reached the registry")
	for _, m := range srv.MachineInfos() {
		if m.MachineID == "dotnet" && m.State != "" {
			t.Fatalf("the .NET client's entry has a state: %+v", m)
		}
	}
}
