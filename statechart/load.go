package statechart

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LoadError is a script that cannot be loaded: where, and what is wrong.
type LoadError struct {
	File      string // as given to WithFilename; "" when none
	Line, Col int    // 1-based; 0 when not known
	Path      string // the key path in the script, e.g. states.a.on.GO[0].target
	Msg       string
}

func (e *LoadError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("script")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Compat chooses between SCXML semantics and XStateNet's where they differ.
type Compat int

const (
	// SCXML follows the W3C SCXML algorithm (the default).
	SCXML Compat = iota
	// XStateNet follows XStateNet's engines where a migrating user would
	// notice: a guard name nobody registered counts as true (instead of a
	// load error); onDone fires only for parallel states, not when a
	// compound state reaches a final child; and a state with a history
	// child that has recorded something resumes there on any entry, not
	// only when the history state is the target; target '.' means no
	// target; initial on a parallel state is ignored; a history key on a
	// compound state is an implicit history child. See docs/statecharts.md.
	XStateNet
)

// LoadOption changes how Load reads a script.
type LoadOption func(*loadConfig)

type loadConfig struct {
	file   string
	compat Compat
}

// WithFilename names the script in load errors.
func WithFilename(name string) LoadOption { return func(c *loadConfig) { c.file = name } }

// WithCompat selects SCXML (default) or XStateNet semantics.
func WithCompat(c Compat) LoadOption { return func(lc *loadConfig) { lc.compat = c } }

// Limits on what a script may declare, so that a script read from an
// untrusted place cannot make Load or a machine unbounded.
const (
	maxStates      = 10000
	maxScriptBytes = 16 << 20
	maxMicrosteps  = 10000 // per macrostep: an always-loop stops with an error
	maxInternalQ   = 10000
)

type loader struct {
	cfg   loadConfig
	impl  Implementations
	def   *Definition
	order int
	err   *LoadError
	// pending target references, resolved once every state exists
	fixups []func()
}

// Load reads a script and checks it against impl: every target must exist,
// and every action, guard, service and delay name it uses must be in impl.
// The error, a *LoadError, names the line, column and key path.
func Load(script []byte, impl Implementations, opts ...LoadOption) (*Definition, error) {
	l := &loader{impl: impl}
	for _, o := range opts {
		o(&l.cfg)
	}
	if len(script) > maxScriptBytes {
		return nil, &LoadError{File: l.cfg.file, Msg: fmt.Sprintf("script is %d bytes; the limit is %d", len(script), maxScriptBytes)}
	}
	v, serr := parseScript(script)
	if serr != nil {
		return nil, &LoadError{File: l.cfg.file, Line: serr.line, Col: serr.col, Msg: serr.msg}
	}
	if v.kind != kObject {
		return nil, l.errAt(v, "", "a script is an object with id, initial and states; this is %s", v.kind)
	}
	l.def = &Definition{byID: map[string]*state{}, compat: l.cfg.compat}
	if id := v.get("id"); id != nil {
		if id.kind != kString || id.str == "" {
			return nil, l.errAt(id, "id", "the machine id must be a non-empty string")
		}
		l.def.scriptID = id.str
	} else {
		l.def.scriptID = "machine"
	}
	if c := v.get("context"); c != nil {
		if c.kind != kObject && c.kind != kNull {
			return nil, l.errAt(c, "context", "context must be an object, not %s", c.kind)
		}
		l.def.context = c
	}
	root := l.state(v, nil, "", "")
	if l.err != nil {
		return nil, l.err
	}
	for _, f := range l.fixups {
		f()
		if l.err != nil {
			return nil, l.err
		}
	}
	for _, s := range l.def.states { // parents come first
		s.alwaysChain = len(s.always) > 0 || s.parent != nil && s.parent.alwaysChain
	}
	l.domains(root)
	return l.def, nil
}

func (l *loader) errAt(v *value, path, format string, a ...any) *LoadError {
	e := &LoadError{File: l.cfg.file, Path: path, Msg: fmt.Sprintf(format, a...)}
	if v != nil {
		e.Line, e.Col = v.line, v.col
	}
	return e
}

func (l *loader) fail(v *value, path, format string, a ...any) {
	if l.err == nil {
		l.err = l.errAt(v, path, format, a...)
	}
}

var stateKeys = map[string]bool{
	"id": true, "key": true, "initial": true, "context": true, "states": true, "type": true, "history": true,
	"target": true, "on": true, "always": true, "after": true, "entry": true, "exit": true, "onEntry": true,
	"onExit": true, "onDone": true, "invoke": true, "meta": true, "description": true, "tags": true,
	"data": true, "output": true, "predictableActionArguments": true, "preserveActionOrder": true,
	"strict": true, "version": true, "schema": true, "delimiter": true, "$schema": true,
}

// state compiles the state node v at path (keys joined by "."); where is
// its key path in the script for messages.
func (l *loader) state(v *value, parent *state, key, where string) *state {
	if l.err != nil {
		return nil
	}
	if v.kind != kObject {
		l.fail(v, where, "a state is an object, not %s", v.kind)
		return nil
	}
	if len(l.def.states) >= maxStates {
		l.fail(v, where, "more than %d states", maxStates)
		return nil
	}
	s := &state{idx: len(l.def.states), key: key, parent: parent}
	l.def.states = append(l.def.states, s)
	if parent != nil {
		if parent.path == "" {
			s.path = key
		} else {
			s.path = parent.path + "." + key
		}
		s.id = l.def.scriptID + "." + s.path
		s.full = "#" + l.def.scriptID + "." + s.path
	} else {
		s.id = l.def.scriptID
		s.full = "#" + l.def.scriptID
	}
	for _, f := range v.fields {
		if !stateKeys[f.key] && f.key != "" {
			l.fail(f.val, join(where, f.key), "unknown key %q in a state (known: on, entry, exit, states, initial, type, always, after, invoke, onDone, id, context)", f.key)
			return nil
		}
	}
	if id := v.get("id"); id != nil && parent != nil {
		if id.kind != kString || id.str == "" {
			l.fail(id, join(where, "id"), "a state id must be a non-empty string")
			return nil
		}
		s.id = id.str
	}
	if prev, dup := l.def.byID[s.id]; dup {
		l.fail(v.get("id"), join(where, "id"), "state id %q is already used by %s: ids must be unique", s.id, prev.full)
		return nil
	}
	l.def.byID[s.id] = s

	typ := v.get("type")
	switch {
	case typ == nil:
		s.kind = atomic
	case typ.kind != kString:
		l.fail(typ, join(where, "type"), "type must be a string: atomic, compound, parallel, final or history")
	default:
		switch typ.str {
		case "atomic", "compound":
			s.kind = atomic
		case "parallel":
			s.kind = parallel
		case "final":
			s.kind = final
		case "history":
			s.kind = history
		default:
			l.fail(typ, join(where, "type"), "unknown state type %q: use atomic, compound, parallel, final or history", typ.str)
		}
	}
	if s.kind == history {
		if parent == nil {
			l.fail(typ, join(where, "type"), "the machine itself cannot be a history state")
			return nil
		}
		if h := v.get("history"); h != nil {
			switch {
			case h.kind == kString && h.str == "deep":
				s.deep = true
			case h.kind == kString && h.str == "shallow":
			case h.kind == kBool:
				s.deep = h.b
			default:
				l.fail(h, join(where, "history"), "history must be 'shallow' or 'deep'")
			}
		}
		parent.histories = append(parent.histories, s)
		hv := v
		l.fixups = append(l.fixups, func() {
			if t := hv.get("target"); t != nil {
				s.initial = l.transitionFrom(s, s, t, where, "")
			}
		})
		return s
	}

	if h := v.get("history"); h != nil && s.kind != history && l.cfg.compat != XStateNet {
		l.fail(h, join(where, "history"), "history belongs on a child state {type: 'history', history: 'shallow' or 'deep'}: add one and target it (XStateNet mode reads it as XStateNet does)")
		return nil
	}
	if states := v.get("states"); states != nil {
		if states.kind != kObject {
			l.fail(states, join(where, "states"), "states must be an object of named states")
			return nil
		}
		for _, f := range states.fields {
			if f.key == "" || strings.ContainsAny(f.key, ".#") {
				l.fail(f.val, join(where, "states"), "state name %q is not usable: a name is non-empty and has no '.' or '#' (they separate paths and ids); give the state an id if you need that name", f.key)
				return nil
			}
			c := l.state(f.val, s, f.key, join(join(where, "states"), f.key))
			if l.err != nil {
				return nil
			}
			s.children = append(s.children, c)
		}
	}
	if h := v.get("history"); h != nil && s.kind != history && len(s.children) > 0 {
		// XStateNet mode: a history key on a state with children is an
		// implicit history child that restores on any entry.
		l.implicitHistory(s, h, join(where, "history"))
	}
	s.end = len(l.def.states) - 1
	if len(s.children) > 0 && s.kind == atomic {
		s.kind = compound
	}
	if s.kind == final && len(s.children) > 0 {
		l.fail(v, where, "a final state cannot have child states")
		return nil
	}
	if s.kind == parallel && len(s.children) == 0 {
		l.fail(v, where, "a parallel state needs at least one child state (its regions)")
		return nil
	}

	s.entry = l.actions(v.get("entry"), join(where, "entry"))
	if e := v.get("onEntry"); e != nil {
		s.entry = append(s.entry, l.actions(e, join(where, "onEntry"))...)
	}
	s.exit = l.actions(v.get("exit"), join(where, "exit"))
	if e := v.get("onExit"); e != nil {
		s.exit = append(s.exit, l.actions(e, join(where, "onExit"))...)
	}

	init := v.get("initial")
	switch {
	case s.kind == compound:
		l.fixups = append(l.fixups, func() { s.initial = l.initialOf(s, init, join(where, "initial")) })
	case init != nil && s.kind == parallel:
		if l.cfg.compat != XStateNet { // XStateNet ignores it
			l.fail(init, join(where, "initial"), "a parallel state has no initial state (all its regions start): remove initial")
			return nil
		}
	case init != nil:
		l.fail(init, join(where, "initial"), "only a state with child states has an initial state")
		return nil
	}

	// Transitions, resolved once every state exists. Document order is
	// the order the keys appear in; "order" numbers them for conflict
	// resolution and for merging wildcard and exact lists.
	sv := v
	l.fixups = append(l.fixups, func() { l.transitions(s, sv, where) })
	return s
}

func (l *loader) implicitHistory(s *state, h *value, where string) {
	deep := false
	switch {
	case h.kind == kString && (h.str == "deep" || h.str == "shallow"):
		deep = h.str == "deep"
	case h.kind == kBool:
		deep = h.b
	default:
		l.fail(h, where, "history must be 'shallow' or 'deep'")
		return
	}
	hs := &state{idx: len(l.def.states), key: "$history", path: s.path + ".$history", parent: s, kind: history, deep: deep}
	if s.path == "" {
		hs.path = "$history"
	}
	hs.id = s.id + ".$history"
	hs.full = s.full + ".$history"
	hs.end = hs.idx
	l.def.states = append(l.def.states, hs)
	l.def.byID[hs.id] = hs
	s.children = append(s.children, hs)
	s.histories = append(s.histories, hs)
}

func (l *loader) transitions(s *state, v *value, where string) {
	for _, f := range v.fields {
		switch f.key {
		case "on":
			if f.val.kind != kObject {
				l.fail(f.val, join(where, "on"), "on must be an object of event names to transitions")
				return
			}
			for _, ef := range f.val.fields {
				p := join(join(where, "on"), ef.key)
				ts := l.transitionList(s, ef.val, p, ef.key)
				if ef.key == "" {
					s.always = append(s.always, ts...)
					continue
				}
				l.addOn(s, ef.key, ts)
			}
		case "always":
			s.always = append(s.always, l.transitionList(s, f.val, join(where, "always"), "")...)
		case "after":
			l.after(s, f.val, join(where, "after"))
		case "onDone":
			ts := l.transitionList(s, f.val, join(where, "onDone"), "done.state."+s.id)
			l.addOn(s, "done.state."+s.id, ts)
		case "invoke":
			l.invoke(s, f.val, join(where, "invoke"))
		}
		if l.err != nil {
			return
		}
	}
}

func (l *loader) addOn(s *state, event string, ts []*transition) {
	if event == "*" || strings.HasSuffix(event, ".*") {
		for _, t := range ts {
			t.prefix = strings.TrimSuffix(event, "*")
		}
		s.wild = append(s.wild, ts...)
		return
	}
	if s.on == nil {
		s.on = map[string][]*transition{}
	}
	s.on[event] = append(s.on[event], ts...)
}

func (l *loader) after(s *state, v *value, where string) {
	if v.kind != kObject {
		l.fail(v, where, "after must be an object of delays (milliseconds or a delay name) to transitions")
		return
	}
	for _, f := range v.fields {
		p := join(where, f.key)
		a := afterSpec{}
		if ms, err := strconv.ParseFloat(f.key, 64); err == nil {
			if ms < 0 {
				l.fail(f.val, p, "a delay cannot be negative")
				return
			}
			a.ms = ms
		} else {
			d, ok := l.impl.Delays[f.key]
			if !ok {
				l.fail(&value{line: f.line, col: f.col}, p, "unknown delay %q: register it in Implementations.Delays, or write the delay in milliseconds", f.key)
				return
			}
			a.named = d
		}
		a.event = "xstate.after(" + f.key + ")#" + s.id
		s.after = append(s.after, a)
		l.addOn(s, a.event, l.transitionList(s, f.val, p, a.event))
	}
}

func (l *loader) invoke(s *state, v *value, where string) {
	items := []*value{v}
	if v.kind == kArray {
		items = v.items
	}
	for i, it := range items {
		p := where
		if v.kind == kArray {
			p = fmt.Sprintf("%s[%d]", where, i)
		}
		if it.kind != kObject {
			l.fail(it, p, "invoke must be an object {src, id, onDone, onError}")
			return
		}
		src := it.get("src")
		if src == nil || src.kind != kString {
			l.fail(it, p, "invoke needs src, the name of a registered service")
			return
		}
		fn, ok := l.impl.Services[src.str]
		if !ok {
			l.fail(src, join(p, "src"), "unknown service %q: register it in Implementations.Services", src.str)
			return
		}
		inv := invokeSpec{id: src.str, src: src.str, fn: fn}
		if id := it.get("id"); id != nil {
			if id.kind != kString || id.str == "" {
				l.fail(id, join(p, "id"), "invoke id must be a non-empty string")
				return
			}
			inv.id = id.str
		}
		for _, f := range it.fields {
			switch f.key {
			case "onDone":
				ev := "done.invoke." + inv.id
				l.addOn(s, ev, l.transitionList(s, f.val, join(p, "onDone"), ev))
			case "onError":
				ev := "error.platform." + inv.id
				l.addOn(s, ev, l.transitionList(s, f.val, join(p, "onError"), ev))
			case "src", "id", "data", "input", "autoForward":
			default:
				l.fail(f.val, join(p, f.key), "unknown key %q in invoke (known: src, id, onDone, onError)", f.key)
				return
			}
		}
		s.invokes = append(s.invokes, inv)
	}
}

// transitionList compiles a transition, or an array of them, on event.
func (l *loader) transitionList(s *state, v *value, where, event string) []*transition {
	if v.kind == kArray && !isTargetArray(v) {
		var ts []*transition
		for i, it := range v.items {
			t := l.transitionFrom(s, s, it, fmt.Sprintf("%s[%d]", where, i), event)
			if t != nil {
				ts = append(ts, t)
			}
		}
		return ts
	}
	if t := l.transitionFrom(s, s, v, where, event); t != nil {
		return []*transition{t}
	}
	return nil
}

// isTargetArray reports whether an array is a list of targets (strings)
// rather than a list of transitions (objects).
func isTargetArray(v *value) bool {
	for _, it := range v.items {
		if it.kind != kString {
			return false
		}
	}
	return len(v.items) > 0
}

var transitionKeys = map[string]bool{
	"target": true, "actions": true, "cond": true, "guard": true, "in": true, "internal": true,
	"reenter": true, "description": true, "meta": true, "event": true, "type": true,
}

// transitionFrom compiles one transition whose source is src; relative
// targets resolve against ctx (the source, or a history state's parent).
func (l *loader) transitionFrom(src, ctx *state, v *value, where, event string) *transition {
	if l.err != nil {
		return nil
	}
	l.order++
	t := &transition{order: l.order, source: src, event: event}
	var target *value
	var explicit *bool // internal: true|false, or reenter
	switch v.kind {
	case kString, kArray:
		target = v
	case kNull:
	case kObject:
		for _, f := range v.fields {
			if !transitionKeys[f.key] {
				l.fail(f.val, join(where, f.key), "unknown key %q in a transition (known: target, actions, cond, guard, in, internal)", f.key)
				return nil
			}
		}
		target = v.get("target")
		t.actions = l.actions(v.get("actions"), join(where, "actions"))
		t.guard = l.guard(v, where)
		if in := v.get("in"); in != nil {
			if in.kind != kString {
				l.fail(in, join(where, "in"), "in must name a state: '#id' or a path from the machine root")
				return nil
			}
			t.in = l.def.lookup(in.str)
			if t.in == nil {
				l.fail(in, join(where, "in"), "unknown state %q in in: use '#id', '#id.path' or a path from the machine root", in.str)
				return nil
			}
		}
		if i := v.get("internal"); i != nil {
			if i.kind != kBool {
				l.fail(i, join(where, "internal"), "internal must be true or false")
				return nil
			}
			explicit = &i.b
		}
		if r := v.get("reenter"); r != nil {
			if r.kind != kBool {
				l.fail(r, join(where, "reenter"), "reenter must be true or false")
				return nil
			}
			internal := !r.b
			explicit = &internal
		}
	default:
		l.fail(v, where, "a transition is a target string, an array of targets, or an object {target, actions, cond}; not %s", v.kind)
		return nil
	}
	if target != nil {
		var refs []*value
		switch target.kind {
		case kString:
			refs = []*value{target}
		case kArray:
			refs = target.items
		case kNull:
		default:
			l.fail(target, join(where, "target"), "target must be a state name or an array of them")
			return nil
		}
		tpath := join(where, "target")
		if target == v {
			tpath = where // the transition is the target string or array itself
		}
		allDot := len(refs) > 0
		for _, r := range refs {
			if r.kind != kString {
				l.fail(r, tpath, "target must be a state name, not %s", r.kind)
				return nil
			}
			if r.str == "" || r.str == "." && l.cfg.compat == XStateNet {
				continue // XStateNet reads '.' as "no target": stay, exit nothing
			}
			ts := l.resolve(ctx, r.str)
			if ts == nil {
				l.fail(r, tpath, "unknown target %q: name a sibling state, '.child', or '#id.path'", r.str)
				return nil
			}
			if ts == l.def.root() {
				l.fail(r, tpath, "the machine itself cannot be a target")
				return nil
			}
			if ts.kind == history {
				t.hasHist = true
			}
			if !strings.HasPrefix(r.str, ".") {
				allDot = false
			}
			t.targets = append(t.targets, ts)
		}
		t.internal = allDot
	}
	if explicit != nil {
		t.internal = *explicit
	}
	for i := 0; i < len(t.targets); i++ {
		for j := i + 1; j < len(t.targets); j++ {
			a, b := t.targets[i], t.targets[j]
			if a == b || a.contains(b) || b.contains(a) || !inParallelRegions(a, b) {
				l.fail(target, join(where, "target"), "targets %s and %s cannot be active together: several targets must be in different regions of a parallel state", a.full, b.full)
				return nil
			}
		}
	}
	return t
}

// inParallelRegions reports whether a and b can be active together: their
// least common ancestor is a parallel state.
func inParallelRegions(a, b *state) bool {
	for p := a.parent; p != nil; p = p.parent {
		if p.contains(b) {
			return p.kind == parallel
		}
	}
	return false
}

// resolve finds a target: "#id[.path]", ".child[.path]" (relative to ctx),
// or "sibling[.path]" (relative to ctx's parent; for the root, its child).
func (l *loader) resolve(ctx *state, ref string) *state {
	switch {
	case strings.HasPrefix(ref, "#"):
		return l.def.lookup(ref)
	case strings.HasPrefix(ref, "."):
		return descend(ctx, ref[1:])
	case ctx.parent == nil:
		return descend(ctx, ref)
	default:
		return descend(ctx.parent, ref)
	}
}

func (l *loader) initialOf(s *state, init *value, where string) *transition {
	l.order++
	t := &transition{order: l.order, source: s, internal: true}
	switch {
	case init == nil:
		for _, c := range s.children {
			if c.kind != history {
				t.targets = []*state{c}
				break
			}
		}
	case init.kind == kString && !strings.HasPrefix(init.str, "#"):
		c := descend(s, init.str)
		if c == nil || c.parent != s {
			l.fail(init, where, "initial %q is not a child state of %s", init.str, s.full)
			return nil
		}
		t.targets = []*state{c}
	default:
		// SCXML's deep initial: '#id' or an array of them.
		refs := []*value{init}
		if init.kind == kArray {
			refs = init.items
		}
		for _, r := range refs {
			if r.kind != kString {
				l.fail(r, where, "initial must be a child state's name, or '#id' targets inside this state")
				return nil
			}
			c := l.resolve(s, r.str)
			if r.str != "" && r.str[0] != '#' && r.str[0] != '.' {
				c = descend(s, r.str)
			}
			if c == nil || !s.contains(c) {
				l.fail(r, where, "initial %q is not a state inside %s", r.str, s.full)
				return nil
			}
			if c.kind == history {
				t.hasHist = true
			}
			t.targets = append(t.targets, c)
		}
	}
	if len(t.targets) == 0 {
		l.fail(nil, where, "%s has no child state to start in", s.full)
		return nil
	}
	return t
}

func (l *loader) guard(v *value, where string) Guard {
	g := v.get("cond")
	key := "cond"
	if g == nil {
		g, key = v.get("guard"), "guard"
	}
	if g == nil {
		return nil
	}
	name := ""
	switch {
	case g.kind == kString:
		name = g.str
	case g.kind == kObject && g.get("type") != nil && g.get("type").kind == kString:
		name = g.get("type").str
	default:
		l.fail(g, join(where, key), "%s must name a registered guard", key)
		return nil
	}
	fn, ok := l.impl.Guards[name]
	if !ok {
		if l.cfg.compat == XStateNet {
			return nil // XStateNet: an unregistered guard counts as true
		}
		l.fail(g, join(where, key), "unknown guard %q: register it in Implementations.Guards", name)
		return nil
	}
	return fn
}

func (l *loader) actions(v *value, where string) []Action {
	if v == nil || v.kind == kNull {
		return nil
	}
	items := []*value{v}
	if v.kind == kArray {
		items = v.items
	}
	var out []Action
	for i, it := range items {
		p := where
		if v.kind == kArray {
			p = fmt.Sprintf("%s[%d]", where, i)
		}
		if a := l.action(it, p); a != nil {
			out = append(out, a)
		} else if l.err != nil {
			return nil
		}
	}
	return out
}

func (l *loader) action(v *value, where string) Action {
	name := ""
	switch v.kind {
	case kString:
		name = v.str
	case kObject:
		typ := v.get("type")
		if typ == nil || typ.kind != kString {
			l.fail(v, where, "an inline action needs type: assign, send, raise, or a registered action's name")
			return nil
		}
		switch typ.str {
		case "assign":
			return l.assign(v, where)
		case "send", "raise", "sendTo":
			return l.send(v, typ.str, where)
		}
		name = typ.str
	default:
		l.fail(v, where, "an action is a registered action's name or an inline {type: ...} action, not %s", v.kind)
		return nil
	}
	fn, ok := l.impl.Actions[name]
	if !ok {
		l.fail(v, where, "unknown action %q: register it in Implementations.Actions", name)
		return nil
	}
	return fn
}

func (l *loader) assign(v *value, where string) Action {
	a := v.get("assignment")
	if a == nil || a.kind != kObject {
		l.fail(v, where, "an assign action needs assignment: {key: value, ...}")
		return nil
	}
	fields := a.fields
	return func(s *Scope) error {
		for _, f := range fields {
			s.Context[f.key] = f.val.toAny()
		}
		return nil
	}
}

func (l *loader) send(v *value, typ, where string) Action {
	ev := v.get("event")
	if ev == nil || ev.kind != kString || ev.str == "" {
		l.fail(v, where, "a %s action needs event, the event's name", typ)
		return nil
	}
	name := ev.str
	var data []byte
	if d := v.get("data"); d != nil {
		data = d.toJSON()
	}
	to := ""
	if t := v.get("to"); t != nil {
		if t.kind != kString {
			l.fail(t, join(where, "to"), "to must be a machine id")
			return nil
		}
		to = t.str
	}
	var delay time.Duration
	var named Delay
	if d := v.get("delay"); d != nil {
		switch d.kind {
		case kNumber:
			ms, _ := strconv.ParseFloat(d.str, 64)
			delay = time.Duration(ms * float64(time.Millisecond))
		case kString:
			fn, ok := l.impl.Delays[d.str]
			if !ok {
				l.fail(d, join(where, "delay"), "unknown delay %q: register it in Implementations.Delays, or give milliseconds", d.str)
				return nil
			}
			named = fn
		default:
			l.fail(d, join(where, "delay"), "delay must be milliseconds or a delay name")
			return nil
		}
	}
	if typ == "raise" {
		return func(s *Scope) error {
			s.m.raise(Event{Name: name, Data: data, Origin: s.m.id})
			return nil
		}
	}
	return func(s *Scope) error {
		d := delay
		if named != nil {
			d = named(s)
		}
		target := to
		if target == "" {
			target = s.m.id
		}
		s.m.queueSend(target, Event{Name: name, Data: data, Origin: s.m.id}, d)
		return nil
	}
}

// domains precomputes each transition's domain when it does not depend on
// history.
func (l *loader) domains(root *state) {
	for _, s := range l.def.states {
		each := func(ts []*transition) {
			for _, t := range ts {
				if !t.hasHist {
					t.domain = staticDomain(t, t.targets)
				}
			}
		}
		for _, ts := range s.on {
			each(ts)
		}
		each(s.wild)
		each(s.always)
		if s.initial != nil && !s.initial.hasHist {
			s.initial.domain = staticDomain(s.initial, s.initial.targets)
		}
	}
	_ = root
}

// staticDomain is SCXML's getTransitionDomain for the given effective
// targets; nil for a targetless transition.
func staticDomain(t *transition, targets []*state) *state {
	if len(targets) == 0 {
		return nil
	}
	if t.internal && t.source.kind == compound {
		all := true
		for _, s := range targets {
			if !t.source.contains(s) {
				all = false
				break
			}
		}
		if all {
			return t.source
		}
	}
	// The least common compound ancestor of the source and the targets.
	for a := t.source.parent; a != nil; a = a.parent {
		if a.kind != compound && a.parent != nil {
			continue
		}
		all := true
		for _, s := range targets {
			if !a.contains(s) {
				all = false
				break
			}
		}
		if all {
			return a
		}
	}
	return t.source.root()
}

func (s *state) root() *state {
	for s.parent != nil {
		s = s.parent
	}
	return s
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
