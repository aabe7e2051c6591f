package statechart

import (
	"encoding/json"
	"math/bits"
)

// The compiled model. States are numbered in document order (a pre-order
// walk), so the descendants of a state are exactly the states numbered
// (idx, end]: containment tests are two comparisons, and the exit and entry
// sets are bit sets walked in document order (entry) or its reverse (exit).

type stateKind uint8

const (
	atomic stateKind = iota
	compound
	parallel
	final
	history
)

type state struct {
	idx       int
	end       int // the last descendant's idx (idx itself for a leaf)
	key       string
	path      string // keys from the root joined by "."; "" for the root
	id        string // the explicit id, else "<scriptid>.<path>"; the root's is the script id
	full      string // "#<scriptid>.<path>", XStateNet's form
	kind      stateKind
	deep      bool // a deep history state
	parent    *state
	children  []*state // document order, history states included
	histories []*state

	// initial is the default transition of a compound state (its initial
	// child, or the targets of an SCXML-style deep initial) and of a history
	// state (its default target).
	initial *transition

	entry, exit []Action
	on          map[string][]*transition // by exact event name, document order
	wild        []*transition            // "*" and "prefix.*" transitions, document order
	always      []*transition
	alwaysChain bool // this state or an ancestor has always transitions
	after       []afterSpec
	invokes     []invokeSpec
}

func (s *state) isAtomic() bool { return len(s.children) == 0 || s.kind == final }

// contains reports whether o is a proper descendant of s.
func (s *state) contains(o *state) bool { return s.idx < o.idx && o.idx <= s.end }

type transition struct {
	order    int // global document order
	source   *state
	targets  []*state
	internal bool
	hasHist  bool   // a target is a history state: the domain depends on history
	domain   *state // precomputed when !hasHist
	event    string // the descriptor, for messages ("" for eventless)
	prefix   string // for wildcard descriptors: "" matches every event
	actions  []Action
	guard    Guard
	in       *state
}

func (t *transition) matches(name string) bool {
	return len(name) >= len(t.prefix) && name[:len(t.prefix)] == t.prefix
}

type afterSpec struct {
	ms    float64 // when named == nil
	named Delay
	event string // xstate.after(<delay>)#<state id>
}

type invokeSpec struct {
	id  string
	src string
	fn  Service
}

// bitset is a set of state numbers.
type bitset []uint64

func newBitset(n int) bitset           { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool        { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func (b bitset) add(i int)             { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) remove(i int)          { b[i>>6] &^= 1 << (uint(i) & 63) }
func (b bitset) clear()                { clear(b) }
func (b bitset) next(i int) int        { return b.nextIn(i, len(b)*64-1) }
func (b bitset) anyIn(lo, hi int) bool { return lo <= hi && b.nextIn(lo, hi) >= 0 }

// nextIn returns the smallest member in [i, hi], or -1.
func (b bitset) nextIn(i, hi int) int {
	for i <= hi {
		w := b[i>>6] >> (uint(i) & 63)
		if w != 0 {
			j := i + bits.TrailingZeros64(w)
			if j > hi {
				return -1
			}
			return j
		}
		i = (i | 63) + 1
	}
	return -1
}

// prev returns the largest member <= i, or -1.
func (b bitset) prev(i int) int {
	for i >= 0 {
		w := b[i>>6] << (63 - uint(i)&63)
		if w != 0 {
			return i - bits.LeadingZeros64(w)
		}
		i = (i &^ 63) - 1
	}
	return -1
}

// Definition is a loaded script: immutable, and shared by every Machine made
// from it.
type Definition struct {
	scriptID string
	states   []*state
	byID     map[string]*state
	context  *value // the script's context, copied into each machine
	compat   Compat
}

// ID returns the script's id.
func (d *Definition) ID() string { return d.scriptID }

func (d *Definition) root() *state { return d.states[0] }

// lookup resolves "#id", "#id.path" or a path from the root.
func (d *Definition) lookup(ref string) *state {
	var s *state
	rest := ref
	if len(ref) > 0 && ref[0] == '#' {
		ref = ref[1:]
		// The longest id that prefixes ref, then a path below it.
		for i := len(ref); i > 0; i-- {
			if i < len(ref) && ref[i] != '.' {
				continue
			}
			if st, ok := d.byID[ref[:i]]; ok {
				s = st
				rest = ref[i:]
				if rest != "" {
					rest = rest[1:]
				}
				break
			}
		}
		if s == nil {
			return nil
		}
	} else {
		s = d.root()
	}
	return descend(s, rest)
}

func descend(s *state, path string) *state {
	for path != "" {
		key := path
		for i := 0; i < len(path); i++ {
			if path[i] == '.' {
				key, path = path[:i], path[i+1:]
				goto found
			}
		}
		path = ""
	found:
		var next *state
		for _, c := range s.children {
			if c.key == key {
				next = c
				break
			}
		}
		if next == nil {
			return nil
		}
		s = next
	}
	return s
}

// dataJSON encodes an action's data argument for an Event.
func dataJSON(data any) json.RawMessage {
	switch d := data.(type) {
	case nil:
		return nil
	case json.RawMessage:
		return d
	case []byte:
		return json.RawMessage(d)
	}
	b, err := json.Marshal(data)
	if err != nil {
		b, _ = json.Marshal(err.Error())
	}
	return b
}
