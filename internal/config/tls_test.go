package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/statebus/statebus/internal/bustest"
)

// TestLoadTLS: the remote-client settings come from the file, the
// environment (both forms) and flags like every other, and a TLS listener
// without its files, or plain TCP off loopback, is refused naming the
// setting.
func TestLoadTLS(t *testing.T) {
	dir := bustest.TempDir(t)
	file := filepath.Join(dir, "appsettings.json")
	os.WriteFile(file, []byte(`{"MessageBus": {
	  "TlsListen": "0.0.0.0:9556", "TlsCert": "/etc/statebus/tls/server.pem", "TlsKey": "/etc/statebus/tls/server-key.pem",
	  "TlsMaxHandshakes": "32",
	  "Access": {"AllowCerts": ["CN=gw-1"], "Rules": [{"Cert": "CN=gw-1", "Register": ["sensor-*"]}]}}}`), 0o644)
	plain := "127.0.0.1:9557"
	if runtime.GOOS != "linux" {
		plain = "" // PlainTcp is Linux-only: Load refuses it elsewhere
	}
	env := map[string]string{"MessageBus__TlsClientCa": "/etc/statebus/tls/clients.pem", "STATEBUS_PLAIN_TCP": plain}
	s, err := Load([]string{"--config", file, "--tls-max-handshakes-per-address", "2"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	tc := s.Server.TLS
	if tc.Listen != "0.0.0.0:9556" || tc.Cert != "/etc/statebus/tls/server.pem" || tc.Key != "/etc/statebus/tls/server-key.pem" ||
		tc.ClientCA != "/etc/statebus/tls/clients.pem" || tc.MaxHandshakes != 32 || tc.MaxHandshakesPerAddress != 2 ||
		s.Server.PlainTCP != plain || s.Server.Access.Rules[0].Cert != "CN=gw-1" || s.Server.Access.AllowCerts[0] != "CN=gw-1" {
		t.Fatalf("settings %+v", s.Server)
	}
	if s, err := Load([]string{"--config", file, "--tls-listen", "off"}, func(string) string { return "" }); err != nil || s.Server.TLS.Listen != "" {
		t.Fatalf("--tls-listen off: %v %+v", err, s)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-listen", ":9556"}, "config: TlsListen is set but TlsCert is not"},
		{[]string{"--tls-listen", ":9556", "--tls-cert", "c", "--tls-key", "k"}, "config: TlsListen is set but TlsClientCa is not"},
		{[]string{"--tls-listen", "9556", "--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca"}, `config: TlsListen "9556": want HOST:PORT`},
		{[]string{"--tls-max-handshakes", "0"}, "config: TlsMaxHandshakes must be at least 1, not 0"},
		{[]string{"--plain-tcp", "0.0.0.0:9557"}, "config: PlainTcp: 0.0.0.0 is not a loopback address"},
		{[]string{"--plain-tcp", "localhost:9557"}, `config: PlainTcp: "localhost:9557" is not an IP address and port`},
	} {
		_, err := Load(tc.args, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"MessageBus": {"Access": {"Rules": [{"Cert": "gw-1"}]}}}`), 0o644)
	if _, err := Load([]string{"--config", bad}, func(string) string { return "" }); err == nil ||
		!strings.Contains(err.Error(), `certificate name "gw-1" must start with CN=`) {
		t.Errorf("bad certificate name: %v", err)
	}
}
