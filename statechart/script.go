package statechart

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The script reader: JSON plus what XStateNet's parser accepts (unquoted
// keys, single-quoted strings, // and /* */ comments, trailing commas). It
// keeps each value's line and column so that load errors can point at them,
// and keeps object keys in document order, which is the order transitions
// are tried in.

type kind uint8

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

func (k kind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}[k]
}

// value is one parsed script value.
type value struct {
	kind      kind
	line, col int
	str       string // kString; the number's text for kNumber
	b         bool
	items     []*value // kArray
	fields    []field  // kObject, in document order
}

type field struct {
	key       string
	line, col int
	val       *value
}

func (v *value) get(key string) *value {
	for i := range v.fields {
		if v.fields[i].key == key {
			return v.fields[i].val
		}
	}
	return nil
}

// toAny converts to the value encoding/json would produce.
func (v *value) toAny() any {
	switch v.kind {
	case kBool:
		return v.b
	case kNumber:
		f, _ := strconv.ParseFloat(v.str, 64)
		return f
	case kString:
		return v.str
	case kArray:
		a := make([]any, len(v.items))
		for i, it := range v.items {
			a[i] = it.toAny()
		}
		return a
	case kObject:
		m := make(map[string]any, len(v.fields))
		for _, f := range v.fields {
			m[f.key] = f.val.toAny()
		}
		return m
	}
	return nil
}

// toJSON encodes the value as standard JSON.
func (v *value) toJSON() json.RawMessage {
	b, _ := json.Marshal(v.toAny())
	return b
}

type syntaxError struct {
	line, col int
	msg       string
}

type reader struct {
	src       []byte
	pos       int
	line, col int
	depth     int
}

const maxScriptDepth = 200

func parseScript(src []byte) (*value, *syntaxError) {
	r := &reader{src: src, line: 1, col: 1}
	if len(src) >= 3 && src[0] == 0xEF && src[1] == 0xBB && src[2] == 0xBF {
		r.pos = 3
	}
	if !utf8.Valid(src) {
		for r.pos < len(src) {
			if c, n := utf8.DecodeRune(src[r.pos:]); c == utf8.RuneError && n <= 1 {
				return nil, r.errf("the script is not valid UTF-8 here: save it as UTF-8")
			}
			r.advance()
		}
	}
	if err := r.skip(); err != nil {
		return nil, err
	}
	v, err := r.value()
	if err != nil {
		return nil, err
	}
	if err := r.skip(); err != nil {
		return nil, err
	}
	if r.pos < len(r.src) {
		return nil, r.errf("unexpected %s after the script's end", r.what())
	}
	return v, nil
}

func (r *reader) errf(format string, a ...any) *syntaxError {
	return &syntaxError{line: r.line, col: r.col, msg: fmt.Sprintf(format, a...)}
}

func (r *reader) what() string {
	if r.pos >= len(r.src) {
		return "end of script"
	}
	c, _ := utf8.DecodeRune(r.src[r.pos:])
	return strconv.QuoteRune(c)
}

func (r *reader) advance() {
	if r.src[r.pos] == '\n' {
		r.line++
		r.col = 1
	} else if r.src[r.pos]&0xC0 != 0x80 {
		r.col++
	}
	r.pos++
}

// skip skips white space and comments.
func (r *reader) skip() *syntaxError {
	for r.pos < len(r.src) {
		c := r.src[r.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			r.advance()
		case c == '/' && r.pos+1 < len(r.src) && r.src[r.pos+1] == '/':
			for r.pos < len(r.src) && r.src[r.pos] != '\n' {
				r.advance()
			}
		case c == '/' && r.pos+1 < len(r.src) && r.src[r.pos+1] == '*':
			line, col := r.line, r.col
			r.advance()
			r.advance()
			for {
				if r.pos+1 >= len(r.src) {
					return &syntaxError{line, col, "comment is not closed: add */"}
				}
				if r.src[r.pos] == '*' && r.src[r.pos+1] == '/' {
					r.advance()
					r.advance()
					break
				}
				r.advance()
			}
		default:
			return nil
		}
	}
	return nil
}

func (r *reader) value() (*value, *syntaxError) {
	if r.pos >= len(r.src) {
		return nil, r.errf("unexpected end of script: a value is missing")
	}
	v := &value{line: r.line, col: r.col}
	switch c := r.src[r.pos]; {
	case c == '{':
		return v, r.object(v)
	case c == '[':
		return v, r.array(v)
	case c == '"' || c == '\'':
		s, err := r.quoted()
		v.kind, v.str = kString, s
		return v, err
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		return v, r.number(v)
	case isIdentStart(c):
		w := r.word()
		switch w {
		case "true", "false":
			v.kind, v.b = kBool, w == "true"
		case "null":
			v.kind = kNull
		default:
			return nil, &syntaxError{v.line, v.col, fmt.Sprintf("unexpected word %q: quote strings ('...' or \"...\")", w)}
		}
		return v, nil
	}
	return nil, r.errf("unexpected %s: expected a value", r.what())
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func (r *reader) word() string {
	start := r.pos
	for r.pos < len(r.src) && isIdent(r.src[r.pos]) {
		r.advance()
	}
	return string(r.src[start:r.pos])
}

func (r *reader) number(v *value) *syntaxError {
	start := r.pos
	for r.pos < len(r.src) && strings.IndexByte("+-.0123456789eExX_abcdefABCDEF", r.src[r.pos]) >= 0 {
		r.advance()
	}
	text := string(r.src[start:r.pos])
	if _, err := strconv.ParseFloat(strings.TrimPrefix(text, "+"), 64); err != nil {
		return &syntaxError{v.line, v.col, fmt.Sprintf("%q is not a number", text)}
	}
	v.kind, v.str = kNumber, strings.TrimPrefix(text, "+")
	return nil
}

func (r *reader) quoted() (string, *syntaxError) {
	line, col := r.line, r.col
	q := r.src[r.pos]
	r.advance()
	var b strings.Builder
	for {
		if r.pos >= len(r.src) {
			return "", &syntaxError{line, col, "string is not closed: add the closing quote"}
		}
		c := r.src[r.pos]
		switch {
		case c == q:
			r.advance()
			return b.String(), nil
		case c == '\n':
			return "", r.errf("line break inside a string: close the string on the line it starts")
		case c == '\\':
			r.advance()
			if r.pos >= len(r.src) {
				return "", &syntaxError{line, col, "string is not closed: add the closing quote"}
			}
			e := r.src[r.pos]
			switch e {
			case '"', '\'', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if r.pos+4 >= len(r.src) {
					return "", r.errf(`\u needs four hex digits`)
				}
				n, err := strconv.ParseUint(string(r.src[r.pos+1:r.pos+5]), 16, 32)
				if err != nil {
					return "", r.errf(`\u needs four hex digits`)
				}
				for range 4 {
					r.advance()
				}
				b.WriteRune(rune(n))
			default:
				return "", r.errf("unknown escape \\%c in a string", e)
			}
			r.advance()
		default:
			b.WriteByte(c)
			r.advance()
		}
	}
}

func (r *reader) enter() *syntaxError {
	r.depth++
	if r.depth > maxScriptDepth {
		return r.errf("script nests deeper than %d levels", maxScriptDepth)
	}
	return nil
}

func (r *reader) object(v *value) *syntaxError {
	if err := r.enter(); err != nil {
		return err
	}
	defer func() { r.depth-- }()
	v.kind = kObject
	r.advance() // {
	for {
		if err := r.skip(); err != nil {
			return err
		}
		if r.pos >= len(r.src) {
			return &syntaxError{v.line, v.col, "object is not closed: add }"}
		}
		if r.src[r.pos] == '}' {
			r.advance()
			return nil
		}
		f := field{line: r.line, col: r.col}
		switch c := r.src[r.pos]; {
		case c == '"' || c == '\'':
			k, err := r.quoted()
			if err != nil {
				return err
			}
			f.key = k
		case isIdent(c):
			f.key = r.word()
		default:
			return r.errf("unexpected %s: expected a key or }", r.what())
		}
		for _, prev := range v.fields {
			if prev.key == f.key {
				return &syntaxError{f.line, f.col, fmt.Sprintf("key %q appears twice in one object (first at line %d): keep one", f.key, prev.line)}
			}
		}
		if err := r.skip(); err != nil {
			return err
		}
		if r.pos >= len(r.src) || r.src[r.pos] != ':' {
			return r.errf("unexpected %s: expected : after key %q", r.what(), f.key)
		}
		r.advance()
		if err := r.skip(); err != nil {
			return err
		}
		val, err := r.value()
		if err != nil {
			return err
		}
		f.val = val
		v.fields = append(v.fields, f)
		if err := r.skip(); err != nil {
			return err
		}
		if r.pos < len(r.src) && r.src[r.pos] == ',' {
			r.advance()
			continue
		}
		if r.pos < len(r.src) && r.src[r.pos] == '}' {
			continue
		}
		if r.pos >= len(r.src) {
			return r.errf("the object that starts at line %d, column %d is not closed: add }", v.line, v.col)
		}
		return r.errf("unexpected %s: expected , or } after the value of %q", r.what(), f.key)
	}
}

func (r *reader) array(v *value) *syntaxError {
	if err := r.enter(); err != nil {
		return err
	}
	defer func() { r.depth-- }()
	v.kind = kArray
	r.advance() // [
	for {
		if err := r.skip(); err != nil {
			return err
		}
		if r.pos >= len(r.src) {
			return &syntaxError{v.line, v.col, "array is not closed: add ]"}
		}
		if r.src[r.pos] == ']' {
			r.advance()
			return nil
		}
		it, err := r.value()
		if err != nil {
			return err
		}
		v.items = append(v.items, it)
		if err := r.skip(); err != nil {
			return err
		}
		if r.pos < len(r.src) && r.src[r.pos] == ',' {
			r.advance()
			continue
		}
		if r.pos < len(r.src) && r.src[r.pos] == ']' {
			continue
		}
		if r.pos >= len(r.src) {
			return r.errf("the array that starts at line %d, column %d is not closed: add ]", v.line, v.col)
		}
		return r.errf("unexpected %s: expected , or ] in an array", r.what())
	}
}
