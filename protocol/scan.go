package protocol

import (
	"encoding/binary"
	"encoding/json"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of JSON objects and arrays a line may
// have. Deeper input is refused so that a hostile line cannot make the
// scanner's work or a client's decoder's stack grow without bound.
const MaxDepth = 64

// scanner is a small validating JSON scanner. It finds values and their
// extents without building anything, which is all the router needs: the
// bytes it routes are forwarded exactly as they arrived.
type scanner struct {
	data  []byte
	pos   int
	depth int
	err   error
	// blank makes skipSpace replace each raw '\r' and '\n' it passes by a
	// space, in place: the same white space to a JSON reader, and no line
	// break to a line reader (see canonical.go).
	blank bool
	// seps records a raw U+0085, U+2028 or U+2029 in a string, so that
	// only input holding one is searched and copied to escape it.
	seps bool
}

func (s *scanner) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	s.pos = len(s.data)
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t':
			s.pos++
		case '\r', '\n':
			if s.blank {
				s.data[s.pos] = ' '
			}
			s.pos++
		default:
			return
		}
	}
}

// value skips one JSON value and returns its first byte's kind and extent.
func (s *scanner) value() (kind byte, start, end int) {
	s.skipSpace()
	if s.pos >= len(s.data) {
		s.fail(ErrInvalidJSON)
		return 0, 0, 0
	}
	start = s.pos
	kind = s.data[s.pos]
	switch kind {
	case '{':
		s.object()
	case '[':
		s.array()
	case '"':
		s.str()
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	default:
		if kind == '-' || (kind >= '0' && kind <= '9') {
			s.number()
		} else {
			s.fail(ErrInvalidJSON)
		}
	}
	return kind, start, s.pos
}

func (s *scanner) literal(lit string) {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		s.fail(ErrInvalidJSON)
		return
	}
	s.pos += len(lit)
}

func (s *scanner) number() {
	d := s.data
	p := s.pos
	if p < len(d) && d[p] == '-' {
		p++
	}
	switch {
	case p < len(d) && d[p] == '0':
		p++
	case p < len(d) && d[p] >= '1' && d[p] <= '9':
		for p < len(d) && d[p] >= '0' && d[p] <= '9' {
			p++
		}
	default:
		s.fail(ErrInvalidJSON)
		return
	}
	if p < len(d) && d[p] == '.' {
		p++
		q := p
		for p < len(d) && d[p] >= '0' && d[p] <= '9' {
			p++
		}
		if p == q {
			s.fail(ErrInvalidJSON)
			return
		}
	}
	if p < len(d) && (d[p] == 'e' || d[p] == 'E') {
		p++
		if p < len(d) && (d[p] == '+' || d[p] == '-') {
			p++
		}
		q := p
		for p < len(d) && d[p] >= '0' && d[p] <= '9' {
			p++
		}
		if p == q {
			s.fail(ErrInvalidJSON)
			return
		}
	}
	s.pos = p
}

// plain marks the bytes a string may hold as they are: printable ASCII
// other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str skips a string starting at the opening quote and reports whether it
// contains escapes (and so needs unquoting before use).
func (s *scanner) str() (escaped bool) {
	d := s.data
	p := s.pos + 1
	for {
		// Eight bytes at a time while none needs a closer look: most
		// strings (keys, short values) end in the first eight. Past them,
		// 32 bytes a step (the four words' tests are independent, so they
		// overlap), then eight again.
		if p+8 <= len(d) && !special8(binary.LittleEndian.Uint64(d[p:])) {
			p += 8
			for ; p+32 <= len(d); p += 32 {
				w := d[p : p+32 : p+32]
				if specials(binary.LittleEndian.Uint64(w[0:]))|specials(binary.LittleEndian.Uint64(w[8:]))|
					specials(binary.LittleEndian.Uint64(w[16:]))|specials(binary.LittleEndian.Uint64(w[24:])) != 0 {
					break
				}
			}
			for p+8 <= len(d) && !special8(binary.LittleEndian.Uint64(d[p:])) {
				p += 8
			}
		}
		for p < len(d) && plain[d[p]] {
			p++
		}
		if p >= len(d) {
			s.fail(ErrInvalidJSON)
			return
		}
		switch c := d[p]; {
		case c == '"':
			s.pos = p + 1
			return escaped
		case c == '\\':
			escaped = true
			if p+1 >= len(d) {
				s.fail(ErrInvalidJSON)
				return
			}
			switch d[p+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p += 2
			case 'u':
				if p+6 > len(d) || !isHex4(d[p+2:p+6]) {
					s.fail(ErrInvalidJSON)
					return
				}
				p += 6
			default:
				s.fail(ErrInvalidJSON)
				return
			}
		case c < 0x20:
			s.fail(ErrInvalidJSON)
			return
		default:
			r, n := utf8.DecodeRune(d[p:])
			if r == utf8.RuneError && n == 1 {
				s.fail(ErrInvalidUTF8)
				return
			}
			if r == 0x85 || r == 0x2028 || r == 0x2029 {
				s.seps = true
			}
			p += n
		}
	}
}

// special8 reports whether any of the eight bytes in x is not plain: a
// control character, a quote, a backslash or a non-ASCII byte.
func special8(x uint64) bool { return specials(x) != 0 }

// specials is special8's test as a mask: not 0 when one of the eight
// bytes of x needs a closer look.
func specials(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	ctl := (x - 0x20*ones) & ^x // a byte below 0x20
	q := x ^ ('"' * ones)       // zero where a quote is
	bs := x ^ ('\\' * ones)     // zero where a backslash is
	zero := (q-ones) & ^q | (bs-ones) & ^bs
	return (ctl | zero | x) & highs
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *scanner) enter() bool {
	s.depth++
	if s.depth > MaxDepth {
		s.fail(ErrTooDeep)
		return false
	}
	return true
}

func (s *scanner) array() {
	if !s.enter() {
		return
	}
	s.pos++ // [
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		s.depth--
		return
	}
	for s.err == nil {
		s.value()
		s.skipSpace()
		if s.pos >= len(s.data) {
			s.fail(ErrInvalidJSON)
			return
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return
		default:
			s.fail(ErrInvalidJSON)
		}
	}
}

// object skips a whole object.
func (s *scanner) object() {
	var it objectIter
	if !it.begin(s) {
		return
	}
	for it.next(s) {
	}
}

// objectIter walks the members of one object without allocating: the
// router reads a few keys of every event and skips the rest.
type objectIter struct {
	done  bool
	first bool
	Key   []byte // the key, unescaped
	// Escaped says the key was written with escapes; RawKey is the key as
	// written, between its quotes.
	Escaped bool
	RawKey  []byte
	Kind    byte // first byte of the value: { [ " t f n - or a digit
	Start   int  // value extent in s.data
	End     int
}

func (it *objectIter) begin(s *scanner) bool {
	it.first = true
	if !s.enter() {
		return false
	}
	s.pos++ // {
	return true
}

// next advances to the next member; false at the end or on error.
func (it *objectIter) next(s *scanner) bool {
	if !it.nextKey(s) {
		return false
	}
	it.Kind, it.Start, it.End = s.value()
	return s.err == nil
}

// nextKey advances to the next member's key and leaves s at its value, for
// a caller that reads the value itself (see skipValue and descend).
func (it *objectIter) nextKey(s *scanner) bool {
	if it.done || s.err != nil {
		return false
	}
	s.skipSpace()
	if s.pos >= len(s.data) {
		s.fail(ErrInvalidJSON)
		return false
	}
	if it.first {
		it.first = false
		if s.data[s.pos] == '}' {
			s.pos++
			s.depth--
			it.done = true
			return false
		}
	} else {
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case '}':
			s.pos++
			s.depth--
			it.done = true
			return false
		default:
			s.fail(ErrInvalidJSON)
			return false
		}
	}
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		s.fail(ErrInvalidJSON)
		return false
	}
	ks := s.pos
	escaped := s.str()
	if s.err != nil {
		return false
	}
	it.Key = s.data[ks+1 : s.pos-1]
	it.RawKey, it.Escaped = it.Key, escaped
	if escaped {
		// Rare: "\u0054ype" still means Type, as in any JSON reader.
		k, err := stringValue(s.data[ks:s.pos])
		if err != nil {
			s.fail(err)
			return false
		}
		it.Key = []byte(k)
	}
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		s.fail(ErrInvalidJSON)
		return false
	}
	s.pos++
	s.skipSpace()
	return true
}

// skipValue reads the current member's value after nextKey.
func (it *objectIter) skipValue(s *scanner) bool {
	it.Kind, it.Start, it.End = s.value()
	return s.err == nil
}

// is reports whether the current key equals name exactly.
func (it *objectIter) is(name string) bool {
	return string(it.Key) == name
}

// raw returns the current value's bytes.
func (it *objectIter) raw(s *scanner) []byte {
	return s.data[it.Start:it.End]
}

// scanObject prepares to walk data as a single JSON object. It returns an
// error at once when data is not an object at all. s.blank is kept.
func scanObject(s *scanner, it *objectIter, data []byte) error {
	*s = scanner{data: data, blank: s.blank}
	s.skipSpace()
	if s.pos >= len(data) {
		return ErrInvalidJSON
	}
	if data[s.pos] != '{' {
		probe := scanner{data: data}
		probe.value()
		probe.skipSpace()
		if probe.err != nil {
			return probe.err
		}
		if probe.pos != len(data) {
			return ErrInvalidJSON
		}
		return ErrNotObject
	}
	if !it.begin(s) {
		return s.err
	}
	return nil
}

// finish checks that the walk ended cleanly with only white space after
// the object.
func (s *scanner) finish() error {
	if s.err != nil {
		return s.err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return ErrInvalidJSON
	}
	return nil
}

// stringValue returns the string a raw JSON string value holds.
func stringValue(raw []byte) (string, error) {
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' {
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return "", ErrInvalidJSON
			}
			return v, nil
		}
	}
	return string(raw[1 : len(raw)-1]), nil
}

// Valid reports whether data is one valid JSON value (with at most
// MaxDepth levels of nesting and valid UTF-8 in its strings).
func Valid(data []byte) bool {
	s := scanner{data: data}
	s.value()
	s.skipSpace()
	return s.err == nil && s.pos == len(data)
}
