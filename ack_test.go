package statebus_test

import (
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// SendEventAck returns what the service acknowledged: the member of a
// group, the recipients of a broadcast, 0 included.
func TestSendEventAck(t *testing.T) {
	srv := bustest.Start(t, nil)
	a := dial(t, srv, "a")
	ack, err := a.SendEventAck(ctx(t), "*", "E", nil)
	if err != nil || ack.Target != "*" || ack.Recipients == nil || *ack.Recipients != 0 {
		t.Fatalf("broadcast to nobody: %+v, %v", ack, err)
	}
	w := dial(t, srv, "w1")
	if err := w.JoinGroup(ctx(t), "workers"); err != nil {
		t.Fatal(err)
	}
	ack, err = a.SendEventAck(ctx(t), "@workers", "E", map[string]int{"N": 1})
	if err != nil || ack.Target != "w1" || ack.Recipients != nil {
		t.Fatalf("group: %+v, %v", ack, err)
	}
	ack, err = a.SendEventAck(ctx(t), "*", "E", nil)
	if err != nil || ack.Recipients == nil || *ack.Recipients != 1 {
		t.Fatalf("broadcast: %+v, %v", ack, err)
	}
}
