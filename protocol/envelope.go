package protocol

import "unicode/utf8"

// An event's envelope keys must mean the same to every JSON reader. The
// service reads them case-exactly, the .NET client too; but encoding/json,
// Newtonsoft.Json and Jackson (with case-insensitive properties) also take
// "sourceMachineId" for SourceMachineId, and readers differ on which of
// two equal keys wins. So an event object may hold each envelope key at
// most once, written exactly (no escapes), and no key another reader could
// fold onto one of them.

// eventKeys are the envelope keys of an event object.
var eventKeys = [...]string{"SourceMachineId", "TargetMachineId", "EventName", "Payload", "Timestamp"}

// foldRunes are the non-ASCII characters that some reader's
// case-insensitive comparison takes for an ASCII letter: Unicode simple
// case folding (Go's strings.EqualFold, .NET's invariant upper case) maps
// U+017F to s and U+212A to k; Java's equalsIgnoreCase, which compares
// toUpperCase and toLowerCase of each char, also matches U+0130 and
// U+0131 with i.
var foldRunes = [...]struct {
	r rune
	c byte // the lower-case ASCII letter
}{{0x017F, 's'}, {0x212A, 'k'}, {0x0130, 'i'}, {0x0131, 'i'}}

// foldLens has bit n set when a key n bytes long could fold onto an
// envelope key: only keys of those lengths are compared letter by letter.
var foldLens = func() (m uint64) {
	for _, name := range eventKeys {
		lo, hi := len(name), 0
		for i := 0; i < len(name); i++ {
			n := 1
			for _, f := range foldRunes {
				if f.c == name[i]|0x20 {
					n = max(n, utf8.RuneLen(f.r))
				}
			}
			hi += n
		}
		for l := lo; l <= hi; l++ {
			m |= 1 << l
		}
	}
	return m
}()

// mayFold reports, cheaply, whether a key of this length needs foldKey.
func mayFold(key []byte) bool {
	return len(key) < 64 && foldLens>>len(key)&1 != 0
}

// foldKey returns the envelope key that key matches under any reader's
// case-insensitive comparison, or "".
func foldKey(key []byte) string {
	for _, name := range eventKeys {
		if foldsTo(key, name) {
			return name
		}
	}
	return ""
}

// foldsTo reports whether key equals name, an ASCII word, ignoring case
// as any of the readers above does.
func foldsTo(key []byte, name string) bool {
	i := 0
	for j := 0; j < len(name); j++ {
		if i >= len(key) {
			return false
		}
		want := name[j] | 0x20
		if c := key[i]; c < utf8.RuneSelf {
			// c|0x20 is a lower-case letter only when c is a letter.
			if c|0x20 != want {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		if foldRune(r) != want {
			return false
		}
		i += n
	}
	return i == len(key)
}

// foldRune returns the ASCII letter r is taken for, or 0.
func foldRune(r rune) byte {
	for _, f := range foldRunes {
		if f.r == r {
			return f.c
		}
	}
	return 0
}

// errAmbiguous is the error for an event key raw (as written) that is, or
// could be taken for, the envelope key name but is not written exactly
// once, exactly as name.
func errAmbiguous(raw []byte, name string) error {
	return ErrAmbiguousField.New(`"` + string(raw) + `" (routing keys must appear once, exactly as ` + name + `)`)
}
