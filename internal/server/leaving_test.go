package server_test

import (
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// TestRegisterAfterHangUp: a client that closes its socket has freed its
// id for a registration that follows at once, before the service has read
// the end (the Go client's Close does not wait for an answer to an
// Unregister). The events it sent before it closed are still routed, in
// order.
func TestRegisterAfterHangUp(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux lets the service see a hang-up before it reads the end")
	}
	srv := bustest.Start(t, nil)
	sink := dialRaw(t, srv).Connect("sink")
	var prev *bustest.Raw
	for i := range 300 {
		a := dialRaw(t, srv)
		if prev != nil {
			prev.C.Close()
		}
		a.Send(`{"Type":0,"Payload":{"MachineId":"a"}}`)
		a.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"a","RegisteredAt":` + bustest.Timestamp + `\},"Error":null\}`)
		a.Send(fmt.Sprintf(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"sink","EventName":"E","Payload":%d}}`, i))
		prev = a
		sink.Expect(fmt.Sprintf(`{"Success":true,"Data":{"SourceMachineId":"a","TargetMachineId":"sink","EventName":"E","Payload":%d},"Error":null}`, i))
	}
	prev.C.Close()
}

// TestRegisterAfterHalfClose: a holder that shuts down only its writing
// side (it could go on reading) is a hang-up too: the service reads the
// end, ends the connection, and the id is free. A holder that is still
// there keeps its id: the registration fails at once.
func TestRegisterAfterHalfClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux lets the service see a hang-up before it reads the end")
	}
	srv := bustest.Start(t, nil)
	a := dialRaw(t, srv).Connect("a")
	m := dialRaw(t, srv)
	m.Send(`{"Type":0,"Payload":{"MachineId":"a"}}`)
	m.Expect(`{"Success":false,"Data":null,"Error":"Machine id already in use: a"}`)
	if err := a.C.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	m.Send(`{"Type":0,"Payload":{"MachineId":"a"}}`)
	m.ExpectMatch(`\{"Success":true,"Data":\{"MachineId":"a","RegisteredAt":` + bustest.Timestamp + `\},"Error":null\}`)
}
