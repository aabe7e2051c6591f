package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/router"
)

// File is the configuration file's shape, read as .NET's configuration
// reader reads appsettings.json: a UTF-8 byte order mark, // and /* */
// comments and trailing commas are allowed, keys match whatever their
// case, and a setting's value may be a JSON string ("5") as well as a
// number or a boolean, since .NET keeps every value as a string.
type File struct {
	Logging struct {
		LogLevel map[string]string `json:"LogLevel"`
	} `json:"Logging"`
	// MessageBus is the "MessageBus" section, each key's raw value: a
	// setting (see statebusd --help), "Access" or "Routes".
	MessageBus map[string]json.RawMessage `json:"MessageBus"`
}

// UnknownKey is a MessageBus key that names no setting: ignored, as .NET
// ignores it, but reported, since it is usually a misspelling.
type UnknownKey struct {
	// Key is the key as written; Nearest the known key it is closest to.
	Key, Nearest string
}

// ReadFile reads an appsettings.json-shaped file.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", err)
	}
	clean, err := standardJSON(data)
	if err != nil {
		return nil, fmt.Errorf("config %s is not valid: %w", path, err)
	}
	var f File
	if err := json.Unmarshal(clean, &f); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(clean, se.Offset)
			return nil, fmt.Errorf("config %s is not valid JSON at line %d, column %d: %v", path, line, col, se)
		case errors.As(err, &te):
			return nil, fmt.Errorf("config %s: %s", path, typeError("", te))
		}
		return nil, fmt.Errorf("config %s is not valid: %w", path, err)
	}
	return &f, nil
}

// standardJSON turns what .NET's reader accepts into JSON: without the
// byte order mark, comments (outside strings) become spaces, keeping
// line numbers, and commas before a closing bracket are dropped.
func standardJSON(data []byte) ([]byte, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	out := make([]byte, 0, len(data))
	inString, escaped := false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			out = append(out, c)
		case c == '"':
			inString = true
			out = append(out, c)
		case c == '/' && i+1 < len(data) && data[i+1] == '/':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			out = append(out, '\n')
		case c == '/' && i+1 < len(data) && data[i+1] == '*':
			end := bytes.Index(data[i+2:], []byte("*/"))
			if end < 0 {
				line, col := position(data, int64(i+1))
				return nil, fmt.Errorf("comment at line %d, column %d is not closed with */", line, col)
			}
			for _, b := range data[i : i+2+end+2] {
				if b == '\n' {
					out = append(out, '\n')
				}
			}
			out = append(out, ' ')
			i += 2 + end + 1
		default:
			out = append(out, c)
		}
	}
	// Trailing commas, now that no comment stands between a comma and
	// its bracket.
	res := out[:0:0]
	inString, escaped = false, false
	for i, c := range out {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		} else if c == '"' {
			inString = true
		} else if c == ',' {
			rest := bytes.TrimLeft(out[i+1:], " \t\r\n")
			if len(rest) > 0 && (rest[0] == '}' || rest[0] == ']') {
				c = ' '
			}
		}
		res = append(res, c)
	}
	return res, nil
}

// position is the line and column, both from 1, of the byte before
// offset (json.SyntaxError.Offset counts the bad byte as read).
func position(data []byte, offset int64) (line, col int) {
	offset = min(offset, int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

// typeError says what a key wanted and what it got, in the file's terms.
func typeError(prefix string, e *json.UnmarshalTypeError) string {
	key := strings.ReplaceAll(e.Field, ".", ":")
	if prefix != "" {
		key = strings.TrimSuffix(prefix+":"+key, ":")
	}
	return fmt.Sprintf("%s: want %s, not %s", key, kindOf(e.Type), e.Value)
}

func kindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list [...]"
	}
	return "an object {...}"
}

// apply sets what the MessageBus section says and returns the keys that
// name no setting.
func (f *File) apply(s *Settings) ([]UnknownKey, error) {
	keys := make([]string, 0, len(f.MessageBus))
	for k := range f.MessageBus {
		keys = append(keys, k)
	}
	slices.Sort(keys) // errors and warnings in a stable order
	known := []string{"Access", "Routes", "Durable"}
	for _, st := range settings {
		known = append(known, st.key)
	}
	var unknown []UnknownKey
	for _, k := range keys {
		raw := f.MessageBus[k]
		if string(bytes.TrimSpace(raw)) == "null" {
			continue // .NET: no value
		}
		switch {
		case strings.EqualFold(k, "Access"):
			var p access.Policy
			if err := json.Unmarshal(raw, &p); err != nil {
				return nil, fieldError("MessageBus:Access", err)
			}
			s.Server.Access = p
			continue
		case strings.EqualFold(k, "Routes"):
			var r []router.RouteRule
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, fieldError("MessageBus:Routes", err)
			}
			s.Server.Routes = r
			continue
		case strings.EqualFold(k, "Durable"):
			var p []string
			if err := json.Unmarshal(raw, &p); err != nil {
				return nil, fieldError("MessageBus:Durable", err)
			}
			s.Server.Durable.Patterns = p
			continue
		}
		i := slices.IndexFunc(settings, func(st setting) bool { return strings.EqualFold(st.key, k) })
		if i < 0 {
			unknown = append(unknown, UnknownKey{Key: k, Nearest: nearest(k, known)})
			continue
		}
		v, err := scalar(raw)
		if err != nil {
			return nil, fmt.Errorf("MessageBus:%s: %v", settings[i].key, err)
		}
		if err := settings[i].set(s, strings.TrimSpace(v)); err != nil {
			return nil, fmt.Errorf("MessageBus:%s: invalid value %q (want %s)", settings[i].key, v, want(settings[i].key))
		}
	}
	return unknown, nil
}

func fieldError(key string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return errors.New(typeError(key, te))
	}
	return fmt.Errorf("%s: %v", key, err)
}

// scalar is a setting's value as text: a string's contents, or a number
// or boolean as written.
func scalar(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '"':
		var v string
		err := json.Unmarshal(raw, &v)
		return v, err
	case '{':
		return "", errors.New("want a single value, not an object {...}")
	case '[':
		return "", errors.New("want a single value, not a list [...]")
	}
	return string(raw), nil
}

// want describes a setting's values for an error message.
func want(key string) string {
	switch k := kind(key); k {
	case "int":
		return "a whole number"
	case "seconds":
		return "a number of seconds"
	case "octal":
		return "an octal file mode such as 0660"
	case "bool":
		return "true or false"
	case "owner|interactive|sddl":
		return "owner, interactive or an SDDL security descriptor, D:..."
	default:
		return k
	}
}

// nearest returns the candidate closest to key in edit distance, case
// ignored.
func nearest(key string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(key), strings.ToLower(c)); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
