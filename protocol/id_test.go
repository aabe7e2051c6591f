package protocol

import (
	"testing"
	"unicode"
)

func TestValidateIDAlphabet(t *testing.T) {
	for id, want := range map[string]string{
		"machine-a":    "",
		"Gerät 7/ü·β":  "",
		"日本語-機械":       "",
		"a\U0001F600b": "", // emoji are visible
		"a\x01b":       "Invalid machine id: contains control characters",
		"a\x7fb":       "Invalid machine id: contains control characters",
		"a\u202eb":     "Invalid machine id: contains invisible or bidirectional-control character U+202E",
		"a\u202db":     "Invalid machine id: contains invisible or bidirectional-control character U+202D",
		"a\u200bb":     "Invalid machine id: contains invisible or bidirectional-control character U+200B",
		"a\u200db":     "Invalid machine id: contains invisible or bidirectional-control character U+200D",
		"\ufeffa":      "Invalid machine id: contains invisible or bidirectional-control character U+FEFF",
		"a\u0085":      "Invalid machine id: contains invisible or bidirectional-control character U+0085",
		"a\u0080":      "Invalid machine id: contains invisible or bidirectional-control character U+0080",
		"a\u009f":      "Invalid machine id: contains invisible or bidirectional-control character U+009F",
		"a\u00adb":     "Invalid machine id: contains invisible or bidirectional-control character U+00AD",
		"a\u061cb":     "Invalid machine id: contains invisible or bidirectional-control character U+061C",
		"a\u2028b":     "Invalid machine id: contains invisible or bidirectional-control character U+2028",
		"a\u2029b":     "Invalid machine id: contains invisible or bidirectional-control character U+2029",
		"a\u2066b":     "Invalid machine id: contains invisible or bidirectional-control character U+2066",
		"a\u2060b":     "Invalid machine id: contains invisible or bidirectional-control character U+2060",
		"a\u206fb":     "Invalid machine id: contains invisible or bidirectional-control character U+206F",
		"a\u00a0b":     "Invalid machine id: contains invisible or bidirectional-control character U+00A0",
		"a\u3000b":     "Invalid machine id: contains invisible or bidirectional-control character U+3000",
		"a\u3164b":     "Invalid machine id: contains invisible or bidirectional-control character U+3164",
		"a\u034fb":     "Invalid machine id: contains invisible or bidirectional-control character U+034F",
		"a\ufe0fb":     "Invalid machine id: contains invisible or bidirectional-control character U+FE0F",
		"a\U000E0041b": "Invalid machine id: contains invisible or bidirectional-control character U+E0041",
		"a\U000E0100b": "Invalid machine id: contains invisible or bidirectional-control character U+E0100",
	} {
		err := ValidateID([]byte(id))
		got := ""
		if err != nil {
			got = Wire(err).Text
			if ParseError(got).Unwrap() != ErrInvalidID {
				t.Errorf("%q: %q is not of kind ErrInvalidID", id, got)
			}
		}
		if got != want {
			t.Errorf("ValidateID(%q) = %q, want %q", id, got, want)
		}
	}
	// Every code point in the ranges the docs name is refused.
	for _, rg := range [][2]rune{{0x80, 0x9f}, {0x200b, 0x200f}, {0x2028, 0x202e}, {0x2060, 0x206f},
		{0xfeff, 0xfeff}, {0xad, 0xad}, {0x61c, 0x61c}, {0xfe00, 0xfe0f}, {0xe0000, 0xe007f}} {
		for r := rg[0]; r <= rg[1]; r++ {
			if ValidateID([]byte("a"+string(r))) == nil {
				t.Errorf("ValidateID accepts %U", r)
			}
		}
	}
}

func TestDecodeGroupAlphabet(t *testing.T) {
	for payload, want := range map[string]string{
		`{"Group":"workers"}`:                 "",
		`{"Group":"w\u202eorkers"}`:           "Invalid machine id: group name contains invisible or bidirectional-control character U+202E",
		"{\"Group\":\"w\u200borkers\"}":       "Invalid machine id: group name contains invisible or bidirectional-control character U+200B",
		`{"Group":"w\u0007"}`:                 "Invalid machine id: group name contains control characters",
		`{"Group":""}`:                        "Group is required",
		`{"Group":"g","MachineId":"m\u00ad"}`: "",
	} {
		err := DecodeGroup([]byte(payload), &GroupPayload{})
		got := ""
		if err != nil {
			got = Wire(err).Text
		}
		if got != want {
			t.Errorf("%s: %q, want %q", payload, got, want)
		}
	}
}

// invisible's shortcuts agree with its tables.
func TestInvisibleShortcut(t *testing.T) {
	for r := rune(0xA0); r <= unicode.MaxRune; r++ {
		if got, want := invisible(r), unicode.In(r, invisibleTables...); got != want {
			t.Errorf("invisible(%U) = %v, tables say %v", r, got, want)
		}
	}
}
