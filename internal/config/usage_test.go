package config

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestUsageDefaults: the default each setting's help states is the one
// Load applies, and every setting has a type in --help.
func TestUsageDefaults(t *testing.T) {
	none := func(string) string { return "" }
	base, err := Load(nil, none)
	if err != nil {
		t.Fatal(err)
	}
	var help strings.Builder
	Usage(&help)
	re := regexp.MustCompile(`\(default ([^;)]+)[;)]`)
	for _, st := range settings {
		m := re.FindStringSubmatch(st.usage)
		if m == nil {
			t.Errorf("--%s: no default in %q", st.flag, st.usage)
			continue
		}
		value := m[1]
		if value == "none" {
			value = "" // a setting without a default, such as a file
		}
		s, err := Load([]string{"--" + st.flag, value}, none)
		if err != nil {
			t.Errorf("--%s %s: %v", st.flag, m[1], err)
			continue
		}
		s.HTTPConfigured = false
		if !reflect.DeepEqual(s.Server, base.Server) || s.HTTPAddr != base.HTTPAddr || s.HTTPMachines != base.HTTPMachines ||
			s.DashboardToken != base.DashboardToken {
			t.Errorf("--%s: help says the default is %s, but Load's default differs", st.flag, m[1])
		}
		if !strings.Contains(help.String(), "--"+st.flag+" "+kind(st.key)+"\n") {
			t.Errorf("--help lacks --%s with its type", st.flag)
		}
	}
}
