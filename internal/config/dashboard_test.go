package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// TestDashboardToken: the dashboard's token comes from the file, the
// environment (STATEBUS_DASHBOARD_TOKEN or .NET's MessageBus__DashboardToken)
// or the flag, the flag winning; none by default; --help lists it.
func TestDashboardToken(t *testing.T) {
	file := filepath.Join(bustest.TempDir(t), "appsettings.json")
	os.WriteFile(file, []byte(`{"MessageBus": {"DashboardToken": "from-file"}}`), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, ""},
		{"file", []string{"--config", file}, nil, "from-file"},
		{"env over file", []string{"--config", file}, map[string]string{"STATEBUS_DASHBOARD_TOKEN": "from-env"}, "from-env"},
		{".NET env", nil, map[string]string{"MessageBus__DashboardToken": "dotnet"}, "dotnet"},
		{"flag over env", []string{"--dashboard-token", "from-flag"}, map[string]string{"STATEBUS_DASHBOARD_TOKEN": "from-env"}, "from-flag"},
	} {
		s, err := Load(tc.args, func(k string) string { return tc.env[k] })
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s.DashboardToken != tc.want {
			t.Errorf("%s: token %q, want %q", tc.name, s.DashboardToken, tc.want)
		}
	}
	var help strings.Builder
	Usage(&help)
	if !strings.Contains(help.String(), "--dashboard-token string\n") ||
		!strings.Contains(help.String(), "env STATEBUS_DASHBOARD_TOKEN or MessageBus__DashboardToken; file MessageBus:DashboardToken") {
		t.Errorf("--help lacks the dashboard token:\n%s", help.String())
	}
}
