package protocol

// What the service forwards must mean the same to every JSON reader and
// every line reader: .NET's StreamReader.ReadLine, Java's BufferedReader
// and Node's readline end a line at "\r", "\n" or "\r\n"; Python's
// str.splitlines also at U+0085, U+2028, U+2029, "\v", "\f" and
// "\x1c".."\x1e". A raw "\v", "\f" or "\x1c".."\x1e" is not valid JSON
// anywhere (not white space outside strings, a control character inside),
// so the scanner refuses it. The others are made harmless, keeping the
// value's meaning:
//
//   - a raw "\r" or "\n" can only be white space between tokens (a string
//     may not hold one raw), so the scanner, told to (scanner.blank),
//     replaces it by a space in place as it passes it;
//   - a raw U+0085, U+2028 or U+2029 can only be inside a string; the
//     scanner notes one (scanner.seps), and then the value is copied with
//     each written as its escape \u0085, \u2028 or \u2029.
//
// Clean input, the common case, costs nothing more.

// hasSep reports whether b, valid UTF-8, holds a raw U+0085, U+2028 or
// U+2029.
func hasSep(b []byte) bool {
	for i := 0; i+1 < len(b); i++ {
		switch b[i] {
		case 0xC2:
			if b[i+1] == 0x85 {
				return true
			}
		case 0xE2:
			if i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9) {
				return true
			}
		}
	}
	return false
}

// appendEscapedSeps appends b, valid JSON, to dst with every raw U+0085,
// U+2028 and U+2029 (which valid JSON holds only inside strings) written
// as its \u escape. In valid UTF-8, 0xC2 and 0xE2 only ever start a
// character, so the byte patterns are exactly those characters.
func appendEscapedSeps(dst, b []byte) []byte {
	start := 0
	for i := 0; i+1 < len(b); i++ {
		var esc string
		n := 0
		switch {
		case b[i] == 0xC2 && b[i+1] == 0x85:
			esc, n = `\u0085`, 2
		case b[i] == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && b[i+2] == 0xA8:
			esc, n = `\u2028`, 3
		case b[i] == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && b[i+2] == 0xA9:
			esc, n = `\u2029`, 3
		default:
			continue
		}
		dst = append(dst, b[start:i]...)
		dst = append(dst, esc...)
		i += n - 1
		start = i + 1
	}
	return append(dst, b[start:]...)
}

// escapeSeps returns v, valid JSON, with its raw U+0085, U+2028 and
// U+2029 escaped: v itself when it has none, else a copy appended to
// buf[:0].
func escapeSeps(v, buf []byte) []byte {
	if !hasSep(v) {
		return v
	}
	return appendEscapedSeps(buf[:0], v)
}
