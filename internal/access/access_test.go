package access

import "testing"

func TestMayConnect(t *testing.T) {
	c, err := New(Policy{AllowUIDs: []int{1001}, AllowGIDs: []int{500}}, 999, 998)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid, gid int
		ok       bool
	}{
		{999, 1, true},    // the service's own user
		{0, 0, true},      // root
		{1234, 998, true}, // the socket's group
		{1001, 1, true},   // listed uid
		{1234, 500, true}, // listed gid
		{1234, 1234, false},
	} {
		err := c.MayConnect(Local(-1, tc.uid, tc.gid))
		if (err == nil) != tc.ok {
			t.Errorf("uid %d gid %d: %v", tc.uid, tc.gid, err)
		}
	}
	if err := c.MayConnect(Local(-1, 1234, 1234)); err.Error() != "Access denied: uid 1234 is not allowed to connect" {
		t.Errorf("text: %v", err)
	}
	any, _ := New(Policy{AllowAny: true}, 999, 998)
	if err := any.MayConnect(Local(-1, 4321, 4321)); err != nil {
		t.Errorf("AllowAny: %v", err)
	}
}

func TestRules(t *testing.T) {
	c, err := New(Policy{Rules: []Rule{{UID: 1000, Register: []string{"sensor-*"}, SendTo: []string{"controller", "log-*"}}}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rule(Local(-1, 1000, -1))
	if r.MayRegister("sensor-1") != nil || r.MayRegister("controller") == nil {
		t.Error("register patterns")
	}
	if err := r.MayRegister("controller"); err.Error() != "Access denied: uid 1000 may not register controller" {
		t.Errorf("text: %v", err)
	}
	if r.MaySend("controller") != nil || r.MaySend("log-a") != nil || r.MaySend("sensor-2") == nil || r.MaySend("*") == nil {
		t.Error("send patterns")
	}
	var none *Rule = c.Rule(Local(-1, 2000, -1))
	if none.MayRegister("x") != nil || none.MaySend("*") != nil {
		t.Error("a user without a rule is unrestricted")
	}
	if _, err := New(Policy{Rules: []Rule{{UID: 1, SendTo: []string{"["}}}}, 0, 0); err == nil {
		t.Error("bad pattern accepted")
	}
	if _, err := New(Policy{Rules: []Rule{{UID: 1}, {UID: 1}}}, 0, 0); err == nil {
		t.Error("duplicate rule accepted")
	}
}

func TestNoCredentials(t *testing.T) {
	unix, _ := New(Policy{}, 1000, 1000)
	if err := unix.MayConnect(Local(-1, -1, -1)); err == nil || err.Error() != "Access denied: the peer's credentials are unknown" {
		t.Errorf("unknown peer on a platform with uids: %v", err)
	}
	windows, _ := New(Policy{}, -1, -1)
	if err := windows.MayConnect(Local(-1, -1, -1)); err != nil {
		t.Errorf("a platform without uids: %v", err)
	}
}
