package server_test

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/pipesec"
	"github.com/statebus/statebus/internal/server"
)

// TestPipeSecurity: the pipe carries the access list PipeSecurity stands
// for, read back from a client's handle: by default SYSTEM,
// Administrators and this process's user only; "interactive" adds the
// INTERACTIVE group; an SDDL setting is what it says.
func TestPipeSecurity(t *testing.T) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	me := u.User.Sid.String()
	for _, tc := range []struct {
		setting   string
		want, not []string
	}{
		{pipesec.Owner, []string{";;;SY)", ";;;BA)", ";;;" + me + ")"}, []string{";;;IU)", ";;;AU)", ";;;WD)"}},
		{pipesec.Interactive, []string{";;;SY)", ";;;BA)", ";;;" + me + ")", ";;;IU)"}, []string{";;;AU)", ";;;WD)"}},
		{"D:P(A;;GA;;;SY)(A;;GA;;;" + me + ")", []string{";;;SY)", ";;;" + me + ")"}, []string{";;;BA)", ";;;IU)"}},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			srv := bustest.Start(t, func(c *server.Config) { c.PipeSecurity = tc.setting })
			c, err := busaddr.Dial(context.Background(), srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			h := c.(interface{ Fd() uintptr }).Fd()
			sd, err := windows.GetSecurityInfo(windows.Handle(h), windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION)
			if err != nil {
				t.Fatalf("reading the pipe's security descriptor: %v", err)
			}
			d := sd.String()
			for _, w := range tc.want {
				if !strings.Contains(d, w) {
					t.Errorf("descriptor %s lacks an entry ending %s", d, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(d, n) {
					t.Errorf("descriptor %s has an entry ending %s", d, n)
				}
			}
		})
	}
}
