package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	file := filepath.Join(dir, "appsettings.json")
	os.WriteFile(file, []byte(`{
	  "Logging": {"LogLevel": {"Default": "Warning"}},
	  "MessageBus": {
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
	if s.PipeName != "FromFile" || c.SocketPath != filepath.Join(dir, "CoreFxPipe_FromFile") ||
		c.MaxConnections != 8 || c.HealthCheckInterval != 3*time.Second || c.SocketMode != 0o600 ||
		c.MaxQueueEvents != 99 || c.HandshakeTimeout != 2500*time.Millisecond ||
		c.SlowConsumerTimeout != 500*time.Millisecond || s.LogLevel.String() != "WARN" ||
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
	if s.Server.SocketPath != "/tmp/CoreFxPipe_XStateNet.MessageBus" || s.Server.MaxConnections != 100 {
		t.Fatalf("defaults %+v", s.Server)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"MessageBus": {"MaxConnections": "many"}}`), 0o644)
	pat := filepath.Join(dir, "pat.json")
	os.WriteFile(pat, []byte(`{"MessageBus": {"Access": {"Rules": [{"Uid": 1, "SendTo": ["["]}]}}}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", bad}, "is not valid"},
		{[]string{"--socket-mode", "9"}, `flag --socket-mode: invalid value "9"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--log-format", "xml"}, "--log-format must be text or json"},
		{[]string{"--config", pat}, `access rule for uid 1: bad pattern "["`},
	} {
		_, err := Load(tc.args, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
