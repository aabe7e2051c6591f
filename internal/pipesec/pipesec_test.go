package pipesec

import (
	"strings"
	"testing"
)

// TestSDDL: the named settings give the access lists they promise, an
// SDDL setting is used as it is, and nothing else is accepted.
func TestSDDL(t *testing.T) {
	const me = "S-1-5-21-1-2-3-1001"
	for _, tc := range []struct{ v, account, want string }{
		{"", me, "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;" + me + ")"},
		{"owner", me, "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;" + me + ")"},
		{"Owner", "", "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)"},
		{"interactive", me, "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;" + me + ")(A;;GRGW;;;IU)"},
		{"D:P(A;;GA;;;SY)", me, "D:P(A;;GA;;;SY)"},
	} {
		if got := SDDL(tc.v, tc.account); got != tc.want {
			t.Errorf("SDDL(%q, %q) = %q, want %q", tc.v, tc.account, got, tc.want)
		}
		if err := Check(tc.v); err != nil {
			t.Errorf("Check(%q): %v", tc.v, err)
		}
	}
	for _, v := range []string{"everyone", "AU", "D:", "(A;;GA;;;WD)"} {
		err := Check(v)
		if err == nil || !strings.Contains(err.Error(), "want owner, interactive or a security descriptor in SDDL") {
			t.Errorf("Check(%q) = %v, want it refused saying what is wanted", v, err)
		}
	}
	// Nobody but the service's account, SYSTEM and Administrators, unless
	// asked: no entry for everyone, authenticated or interactive users.
	for _, v := range []string{"", Owner} {
		for _, broad := range []string{";WD)", ";AU)", ";IU)", ";BU)"} {
			if d := SDDL(v, me); strings.Contains(d, broad) {
				t.Errorf("SDDL(%q) = %q grants %s", v, d, broad)
			}
		}
	}
}
