package protocol

import "testing"

func TestPipePath(t *testing.T) {
	for name, want := range map[string]string{
		"":                     `\\.\pipe\XStateNet.MessageBus`,
		"Foo":                  `\\.\pipe\Foo`,
		`\\.\pipe\Given`:       `\\.\pipe\Given`,
		`\\server\pipe\Remote`: `\\server\pipe\Remote`,
	} {
		if got := PipePath(name); got != want {
			t.Errorf("PipePath(%q) = %s, want %s", name, got, want)
		}
	}
}
