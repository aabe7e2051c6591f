package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
)

func TestLoadPrecedence(t *testing.T) {
	dir := bustest.TempDir(t)
	t.Setenv("TMPDIR", dir)
	file := filepath.Join(dir, "appsettings.json")
	os.WriteFile(file, []byte(`{
	  "Logging": {"LogLevel": {"Default": "Warning", "statebus.http": "Error"}},
	  "MessageBus": {
	    "Http": "127.0.0.1:0",
	    "PipeName": "FromFile", "MaxConnections": 7, "HealthCheckIntervalSeconds": 12,
	    "SocketMode": "0600", "MaxQueueEvents": 99, "HandshakeTimeoutSeconds": 2.5,
	    "Access": {"AllowUids": [1000], "Rules": [{"Uid": 1000, "Register": ["sensor-*"]}]}
	  }
	}`), 0o644)
	env := map[string]string{"MessageBus__MaxConnections": "8", "STATEBUS_SLOW_CONSUMER_TIMEOUT_SECONDS": "0.5"}
	s, err := Load([]string{"--config", file, "--health-interval", "3"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c := s.Server
	wantPath := filepath.Join(dir, "CoreFxPipe_FromFile")
	if runtime.GOOS == "windows" {
		wantPath = `\\.\pipe\FromFile`
	}
	if s.PipeName != "FromFile" || c.SocketPath != wantPath ||
		c.MaxConnections != 8 || c.HealthCheckInterval != 3*time.Second || c.SocketMode != 0o600 ||
		c.MaxQueueEvents != 99 || c.HandshakeTimeout != 2500*time.Millisecond ||
		c.SlowConsumerTimeout != 500*time.Millisecond || s.LogLevels["statebus.server"] != slog.LevelWarn ||
		s.LogLevels["statebus.http"] != slog.LevelError || s.HTTPAddr != "127.0.0.1:0" ||
		len(c.Access.AllowUIDs) != 1 || c.Access.Rules[0].Register[0] != "sensor-*" {
		t.Fatalf("settings %+v", s)
	}
}

func TestLoadDefaults(t *testing.T) {
	t.Setenv("TMPDIR", "")
	s, err := Load(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := "/tmp/CoreFxPipe_XStateNet.MessageBus"
	if runtime.GOOS == "windows" {
		want = `\\.\pipe\XStateNet.MessageBus`
	}
	if s.Server.SocketPath != want || s.Server.MaxConnections != 100 ||
		s.HTTPAddr != "127.0.0.1:9555" || s.LogFormat != "" || s.LogLevels["statebus.daemon"] != slog.LevelInfo {
		t.Fatalf("defaults %+v", s)
	}
}

func TestHTTPAndLogLevelOverrides(t *testing.T) {
	dir := bustest.TempDir(t)
	file := filepath.Join(dir, "appsettings.json")
	os.WriteFile(file, []byte(`{"Logging": {"LogLevel": {"Default": "Warning", "statebus.server": "Error"}},
	  "MessageBus": {"Http": "127.0.0.1:9999"}}`), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		http string
		lvl  slog.Level // of every category
	}{
		{"file disabled http", nil, map[string]string{"STATEBUS_HTTP": "off"}, "", -99},
		{"flag empty disables", []string{"--http", ""}, map[string]string{"STATEBUS_HTTP": "127.0.0.1:1"}, "", -99},
		{"env over file", nil, map[string]string{"STATEBUS_HTTP": "127.0.0.1:1"}, "127.0.0.1:1", -99},
		{"--log-level sets every category", []string{"--log-level", "debug"}, nil, "127.0.0.1:9999", slog.LevelDebug},
		{"STATEBUS_LOG_LEVEL too", nil, map[string]string{"STATEBUS_LOG_LEVEL": "Information"}, "127.0.0.1:9999", slog.LevelInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(append([]string{"--config", file}, tc.args...), func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if s.HTTPAddr != tc.http {
				t.Errorf("HTTPAddr %q, want %q", s.HTTPAddr, tc.http)
			}
			for c, l := range s.LogLevels {
				want := tc.lvl
				if want == -99 { // as the file says
					want = map[bool]slog.Level{true: slog.LevelError, false: slog.LevelWarn}[c == "statebus.server"]
				}
				if l != want {
					t.Errorf("%s: %v, want %v", c, l, want)
				}
			}
		})
	}
	file2 := filepath.Join(dir, "empty.json")
	os.WriteFile(file2, []byte(`{"MessageBus": {"Http": ""}}`), 0o644)
	if s, err := Load([]string{"--config", file2}, func(string) string { return "" }); err != nil || s.HTTPAddr != "" {
		t.Fatalf(`"Http": "" : %v %q`, err, s.HTTPAddr)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := bustest.TempDir(t)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"MessageBus": {"MaxConnections": "many"}}`), 0o644)
	pat := filepath.Join(dir, "pat.json")
	os.WriteFile(pat, []byte(`{"MessageBus": {"Access": {"Rules": [{"Uid": 1, "SendTo": ["["]}]}}}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", bad}, `MessageBus:MaxConnections: invalid value "many"`},
		{[]string{"--socket-mode", "9"}, `flag --socket-mode: invalid value "9"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--log-format", "xml"}, "--log-format must be text or json"},
		{[]string{"--config", pat}, `access rule for uid 1: bad pattern "["`},
		{[]string{"--pipe-security", "everyone"}, `config: PipeSecurity "everyone": want owner, interactive or a security descriptor in SDDL (D:...)`},
		{[]string{"--http", "9555"}, `monitoring address "9555": want HOST:PORT, e.g. 127.0.0.1:9555`},
	} {
		_, err := Load(tc.args, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestPackagedConfig: the default config make install puts in
// /etc/statebus loads and says what the unit files assume.
func TestPackagedConfig(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix only: packaging/ is the Linux package (systemd units, a socket under /run)")
	}
	s, err := Load([]string{"--config", "../../packaging/appsettings.json"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if s.Server.SocketPath != "/run/statebus/statebus.sock" || s.HTTPAddr != DefaultHTTPAddr ||
		s.Server.SocketMode != 0o660 || s.LogLevels["statebus.http"] != slog.LevelWarn {
		t.Fatalf("packaged config: %+v", s)
	}
}

func TestLoadRoutes(t *testing.T) {
	dir := bustest.TempDir(t)
	ok := filepath.Join(dir, "ok.json")
	os.WriteFile(ok, []byte(`{"MessageBus": {"Routes": [
	  {"Match": {"EventName": "ORDER_*"}, "Action": "copy", "To": "audit"},
	  {"Match": {"TargetMachineId": "billing"}, "Action": "redirect", "To": "billing-v2"}]}}`), 0o644)
	s, err := Load([]string{"--config", ok}, func(string) string { return "" })
	if err != nil || len(s.Server.Routes) != 2 || s.Server.Routes[1].To != "billing-v2" {
		t.Fatalf("routes %+v %v", s, err)
	}
	loop := filepath.Join(dir, "loop.json")
	os.WriteFile(loop, []byte(`{"MessageBus": {"Routes": [
	  {"Match": {"TargetMachineId": "a"}, "Action": "redirect", "To": "b"},
	  {"Match": {"TargetMachineId": "b"}, "Action": "redirect", "To": "a"}]}}`), 0o644)
	if _, err := Load([]string{"--config", loop}, func(string) string { return "" }); err == nil ||
		!strings.Contains(err.Error(), "routing rules loop: rule 1 (a -> b), rule 2 (b -> a), back to rule 1") {
		t.Fatalf("loop: %v", err)
	}
}

// TestLoadPipeSecurity: MessageBus:PipeSecurity comes from the file, the
// environment and the flag like every setting, and defaults to owner.
func TestLoadPipeSecurity(t *testing.T) {
	dir := bustest.TempDir(t)
	file := filepath.Join(dir, "appsettings.json")
	os.WriteFile(file, []byte(`{"MessageBus": {"PipeSecurity": "interactive"}}`), 0o644)
	const sddl = "D:P(A;;GA;;;SY)(A;;GA;;;BA)"
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "owner"},
		{[]string{"--config", file}, nil, "interactive"},
		{[]string{"--config", file}, map[string]string{"STATEBUS_PIPE_SECURITY": sddl}, sddl},
		{[]string{"--config", file, "--pipe-security", "owner"}, map[string]string{"MessageBus__PipeSecurity": sddl}, "owner"},
	} {
		s, err := Load(tc.args, func(k string) string { return tc.env[k] })
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if s.Server.PipeSecurity != tc.want {
			t.Errorf("%v %v: PipeSecurity %q, want %q", tc.args, tc.env, s.Server.PipeSecurity, tc.want)
		}
	}
}
