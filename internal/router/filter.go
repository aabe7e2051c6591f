package router

import (
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Filter selects events by glob patterns over their names and machine
// ids: "*" matches any run of characters, "?" any one character, and
// anything else itself. An empty pattern matches anything.
type Filter struct {
	EventName, Source, Target string
}

// Watch is an installed filter and who gets the copies.
type Watch[O comparable] struct {
	ID     uint64
	Owner  O
	Filter Filter
}

// Watches is the set of installed filters, indexed so that matching an
// event costs about the same with 10,000 filters as with 10 when they
// cannot match it: filters whose EventName pattern is an exact name are
// found by a map lookup, those that are a prefix followed by "*" by one
// lookup per prefix length of the event's name, and only filters with
// other EventName patterns (or none) are checked one by one.
type Watches[O comparable] struct {
	n      atomic.Int32 // installed filters; 0 skips matching entirely
	mu     sync.RWMutex
	exact  map[string][]*Watch[O]
	prefix map[string][]*Watch[O]
	maxPre int         // longest prefix in prefix
	other  []*Watch[O] // everything else
	byID   map[uint64]*Watch[O]
}

// NewWatches returns an empty set.
func NewWatches[O comparable]() *Watches[O] {
	return &Watches[O]{exact: map[string][]*Watch[O]{}, prefix: map[string][]*Watch[O]{}, byID: map[uint64]*Watch[O]{}}
}

// classify says where a filter is indexed: by exact name, by prefix, or
// neither (key "", false).
func classify(p string) (key string, isPrefix, indexed bool) {
	if p == "" || p == "*" {
		return "", false, false
	}
	if !strings.ContainsAny(p, "*?") {
		return p, false, true
	}
	if body := p[:len(p)-1]; strings.HasSuffix(p, "*") && !strings.ContainsAny(body, "*?") {
		return body, true, true
	}
	return "", false, false
}

// Add installs w.
func (s *Watches[O]) Add(w *Watch[O]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, isPrefix, indexed := classify(w.Filter.EventName)
	switch {
	case !indexed:
		s.other = append(s.other, w)
	case isPrefix:
		s.prefix[key] = append(s.prefix[key], w)
		s.maxPre = max(s.maxPre, len(key))
	default:
		s.exact[key] = append(s.exact[key], w)
	}
	s.byID[w.ID] = w
	s.n.Add(1)
}

// Remove uninstalls the watch id if owner installed it.
func (s *Watches[O]) Remove(owner O, id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.byID[id]
	if w == nil || w.Owner != owner {
		return false
	}
	s.remove(w)
	return true
}

// RemoveAll uninstalls the watches ids of owner: the cleanup when a
// connection closes, in time proportional to what it installed.
func (s *Watches[O]) RemoveAll(owner O, ids []uint64) {
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if w := s.byID[id]; w != nil && w.Owner == owner {
			s.remove(w)
		}
	}
}

func (s *Watches[O]) remove(w *Watch[O]) {
	del := func(list []*Watch[O]) []*Watch[O] {
		out := list[:0:0]
		for _, x := range list {
			if x != w {
				out = append(out, x)
			}
		}
		return out
	}
	key, isPrefix, indexed := classify(w.Filter.EventName)
	switch {
	case !indexed:
		s.other = del(s.other)
	case isPrefix:
		if s.prefix[key] = del(s.prefix[key]); len(s.prefix[key]) == 0 {
			delete(s.prefix, key)
		}
	default:
		if s.exact[key] = del(s.exact[key]); len(s.exact[key]) == 0 {
			delete(s.exact, key)
		}
	}
	delete(s.byID, w.ID)
	s.n.Add(-1)
}

// Match appends to dst the watches whose filter matches the event and
// returns it.
func (s *Watches[O]) Match(dst []*Watch[O], name, source, target []byte) []*Watch[O] {
	if s.n.Load() == 0 {
		return dst
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	check := func(list []*Watch[O], nameChecked bool) {
		for _, w := range list {
			if w.matches(name, source, target, nameChecked) {
				dst = append(dst, w)
			}
		}
	}
	check(s.exact[string(name)], true)
	for i := min(len(name), s.maxPre); i >= 0 && len(s.prefix) > 0; i-- {
		check(s.prefix[string(name[:i])], true)
	}
	check(s.other, false)
	return dst
}

func (w *Watch[O]) matches(name, source, target []byte, nameChecked bool) bool {
	return (nameChecked || glob(w.Filter.EventName, name)) &&
		glob(w.Filter.Source, source) && glob(w.Filter.Target, target)
}

// glob matches s against pattern ("*" any run, "?" any one character), in
// linear time with backtracking to the last star only.
func glob(pattern string, s []byte) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == '?':
			_, n := utf8.DecodeRune(s[i:])
			p++
			i += n
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			_, n := utf8.DecodeRune(s[mark:])
			mark += n
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Glob reports whether s matches pattern, as filters match.
func Glob(pattern, s string) bool { return glob(pattern, []byte(s)) }

// Get returns the installed watch id, or nil.
func (s *Watches[O]) Get(id uint64) *Watch[O] {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byID[id]
}

// Matches reports whether the filter matches an event.
func (f Filter) Matches(name, source, target string) bool {
	return glob(f.EventName, []byte(name)) && glob(f.Source, []byte(source)) && glob(f.Target, []byte(target))
}
