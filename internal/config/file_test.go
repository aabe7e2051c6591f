package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
)

func load(t *testing.T, text string) (*Settings, error) {
	t.Helper()
	path := filepath.Join(bustest.TempDir(t), "appsettings.json")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load([]string{"--config", path}, func(string) string { return "" })
}

// TestDotNetFile: what .NET's configuration reader accepts loads: a BOM,
// comments outside strings, trailing commas, numbers and booleans given
// as strings, keys in any case.
func TestDotNetFile(t *testing.T) {
	s, err := load(t, "\xef\xbb\xbf"+`// statebus settings
{
  /* the bus */
  "MessageBus": {
    "PipeName": "/tmp/a//b/*c*/.sock", // slashes in a string are not comments
    "MaxConnections": "5",
    "slowConsumerTimeoutSeconds": "2.5",
    "HttpMachines": "true",
    "Http": "off",
    "Access": {"AllowUids": [1, 2,],},
  },
  "Logging": {"LogLevel": {"Default": "Warning",}},
}
`)
	if err != nil {
		t.Fatal(err)
	}
	wantPath := "/tmp/a//b/*c*/.sock"
	if runtime.GOOS == "windows" {
		wantPath = `\\.\pipe\/tmp/a//b/*c*/.sock`
	}
	if s.Server.SocketPath != wantPath || s.Server.MaxConnections != 5 ||
		s.Server.SlowConsumerTimeout != 2500*time.Millisecond || !s.HTTPMachines || s.HTTPAddr != "" ||
		len(s.Server.Access.AllowUIDs) != 2 || len(s.UnknownKeys) != 0 {
		t.Fatalf("loaded %+v", s)
	}
}

// TestUnknownKeys: a misspelled MessageBus key is reported with the key
// it most resembles; the setting keeps its default.
func TestUnknownKeys(t *testing.T) {
	s, err := load(t, `{"MessageBus": {"MaxConection": 5, "SlowConsumerTimeout": 3, "Acess": {}, "PipeName": "x"}}`)
	if err != nil {
		t.Fatal(err)
	}
	want := []UnknownKey{{"Acess", "Access"}, {"MaxConection", "MaxConnections"}, {"SlowConsumerTimeout", "SlowConsumerTimeoutSeconds"}}
	if len(s.UnknownKeys) != len(want) {
		t.Fatalf("unknown keys %v, want %v", s.UnknownKeys, want)
	}
	for i := range want {
		if s.UnknownKeys[i] != want[i] {
			t.Errorf("unknown key %d: %v, want %v", i, s.UnknownKeys[i], want[i])
		}
	}
	if s.Server.MaxConnections != 100 {
		t.Errorf("MaxConnections %d, want the default", s.Server.MaxConnections)
	}
}

// TestFileErrors: errors name the key and the value in the file's terms,
// and syntax errors their line and column.
func TestFileErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`{"MessageBus": {"MaxConnections": "many"}}`, `MessageBus:MaxConnections: invalid value "many" (want a whole number)`},
		{`{"MessageBus": {"MaxConnections": 1.5}}`, `MessageBus:MaxConnections: invalid value "1.5" (want a whole number)`},
		{`{"MessageBus": {"SocketMode": "rw"}}`, `MessageBus:SocketMode: invalid value "rw" (want an octal file mode such as 0660)`},
		{`{"MessageBus": {"HandshakeTimeoutSeconds": {"s": 1}}}`, `MessageBus:HandshakeTimeoutSeconds: want a single value, not an object {...}`},
		{`{"MessageBus": {"Access": {"AllowUids": ["root"]}}}`, `MessageBus:Access:AllowUids: want a whole number, not string`},
		{`{"MessageBus": {"Access": {"AllowAny": "yes"}}}`, `MessageBus:Access:AllowAny: want true or false, not string`},
		{`{"MessageBus": 5}`, `MessageBus: want an object {...}, not number`},
		{"{\n  \"MessageBus\": {\n    \"MaxConnections\": 5\n    \"PipeName\": \"x\"\n  }\n}", `is not valid JSON at line 4, column 5: invalid character '"' after object key:value pair`},
		{`{"MessageBus": {} /* open`, `comment at line 1, column 19 is not closed with */`},
	} {
		_, err := load(t, tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.text, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "Go struct") {
			t.Errorf("%s: Go internals in %v", tc.text, err)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"MaxConection", "MaxConnection", 1}} {
		if d := editDistance(tc.a, tc.b); d != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
	}
}
