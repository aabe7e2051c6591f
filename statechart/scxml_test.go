package statechart_test

// A converter from SCXML to the runtime's script form, for the SCION
// conformance suite (scion_test.go). It covers the SCXML the suite's
// structural groups use: <state>, <parallel>, <final>, <history> with its
// default transition, <initial> or the initial attribute, transitions with
// event (including "*"), cond, type="internal", several targets, no target or
// no event, <onentry>/<onexit>, and a tiny datamodel: <data>, <assign>, <log>
// and <raise>. Anything else is an error naming the element, so a test that
// needs more says so instead of passing by accident.
//
// Expressions (data, assign and cond) are evaluated by scxmlExpr, which knows
// numbers, identifiers from the context, + - *, Math.pow and === / !==. Each
// distinct assign and cond becomes a named action or guard ("assign:x=x + 1",
// "cond:x === 4"); <log> is a no-op action.

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/statebus/statebus/statechart"
)

// scxmlScriptID is the converted script's id. SCION's configurations name only
// SCXML state ids, never the root, so any id no test uses will do.
const scxmlScriptID = "scxml"

// xmlNode is a generic SCXML element: comments and text are dropped.
type xmlNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []xmlNode  `xml:",any"`
}

func (n *xmlNode) attr(name string) (string, bool) {
	for _, a := range n.Attrs {
		if a.Name.Local == name && (a.Name.Space == "" || a.Name.Space == n.XMLName.Space) {
			return a.Value, true
		}
	}
	return "", false
}

func (n *xmlNode) name() string { return n.XMLName.Local }

// isStateElem reports whether an element is a state of the chart (including
// the history pseudo-state).
func isStateElem(n *xmlNode) bool {
	switch n.name() {
	case "state", "parallel", "final", "history":
		return true
	}
	return false
}

// ordered is a JSON object that keeps its keys in insertion order: the
// runtime reads states and transitions in document order.
type ordered []kv

type kv struct {
	k string
	v any
}

func (o *ordered) set(k string, v any) { *o = append(*o, kv{k, v}) }

func (o ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// scxmlChart is a converted SCXML document: the script and the actions and
// guards it names.
type scxmlChart struct {
	Script []byte
	Impl   statechart.Implementations
}

type scxmlConverter struct {
	keys  map[*xmlNode]string // each state element's key among its siblings
	paths map[string]string   // each state id's target as '#root.key.key'
	impl  statechart.Implementations
}

// convertSCXML converts an SCXML document to a script for statechart.Load.
func convertSCXML(src []byte) (*scxmlChart, error) {
	var root xmlNode
	dec := xml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("SCXML: %w", err)
	}
	if root.name() != "scxml" {
		return nil, fmt.Errorf("SCXML: the root element is <%s>, not <scxml>", root.name())
	}
	c := &scxmlConverter{
		keys:  map[*xmlNode]string{},
		paths: map[string]string{},
		impl: statechart.Implementations{
			Actions: map[string]statechart.Action{},
			Guards:  map[string]statechart.Guard{},
		},
	}
	if err := c.collectIDs(&root, "#"+scxmlScriptID); err != nil {
		return nil, err
	}
	out := ordered{{"id", scxmlScriptID}}
	ctx := ordered{}
	if err := c.collectData(&root, &ctx); err != nil {
		return nil, err
	}
	if len(ctx) > 0 {
		out.set("context", ctx)
	}
	if err := c.compound(&root, &out); err != nil {
		return nil, err
	}
	script, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return &scxmlChart{Script: script, Impl: c.impl}, nil
}

// collectIDs gives every state element its key and every state id its path
// from the root.
func (c *scxmlConverter) collectIDs(n *xmlNode, path string) error {
	for i := range n.Nodes {
		ch := &n.Nodes[i]
		if !isStateElem(ch) {
			continue
		}
		var k string
		if id, ok := ch.attr("id"); ok {
			if _, dup := c.paths[id]; dup {
				return fmt.Errorf("SCXML: state id %q is used twice", id)
			}
			k = strings.ReplaceAll(id, ".", "_")
		} else {
			k = fmt.Sprintf("_anon%d", len(c.keys))
		}
		for j := range n.Nodes[:i] {
			if c.keys[&n.Nodes[j]] == k {
				return fmt.Errorf("SCXML: two children of one state have the key %q (ids that differ only in '.' and '_')", k)
			}
		}
		c.keys[ch] = k
		p := path + "." + k
		if id, ok := ch.attr("id"); ok {
			c.paths[id] = p
		}
		if err := c.collectIDs(ch, p); err != nil {
			return err
		}
	}
	return nil
}

// collectData gathers every <data> in the document (SCXML's early binding:
// all are initialised when the machine starts).
func (c *scxmlConverter) collectData(n *xmlNode, ctx *ordered) error {
	for i := range n.Nodes {
		ch := &n.Nodes[i]
		if ch.name() == "data" {
			id, ok := ch.attr("id")
			if !ok {
				return fmt.Errorf("SCXML: <data> without id")
			}
			var v any
			if expr, ok := ch.attr("expr"); ok {
				e, err := parseSCXMLExpr(expr)
				if err != nil {
					return fmt.Errorf("SCXML: <data id=%q>: %w", id, err)
				}
				if v, err = e.eval(nil); err != nil {
					return fmt.Errorf("SCXML: <data id=%q>: %w", id, err)
				}
			}
			ctx.set(id, v)
			continue
		}
		if err := c.collectData(ch, ctx); err != nil {
			return err
		}
	}
	return nil
}

// targets converts a whitespace-separated list of state ids to targets: a
// string for one, an array for several. An id is targeted as '#id', unless it
// holds a '.', where '#b1.2' could mean state 2 in state b1: then by its path
// from the root, '#scxml.b.b1_2', whose keys have no '.'.
func (c *scxmlConverter) targets(list string) (any, error) {
	ids := strings.Fields(list)
	if len(ids) == 0 {
		return nil, fmt.Errorf("SCXML: empty target list")
	}
	ts := make([]string, len(ids))
	for i, id := range ids {
		p, ok := c.paths[id]
		switch {
		case !ok:
			return nil, fmt.Errorf("SCXML: target %q is not a state id", id)
		case strings.Contains(id, "."):
			ts[i] = p
		default:
			ts[i] = "#" + id
		}
	}
	if len(ts) == 1 {
		return ts[0], nil
	}
	return ts, nil
}

// compound writes what a state element (or <scxml>) holds: its initial state,
// entry and exit actions, child states and transitions.
func (c *scxmlConverter) compound(n *xmlNode, out *ordered) error {
	var (
		children   ordered
		firstChild string
		initial    any
		entry      []any
		exit       []any
		on         ordered
		always     []any
		onIndex    = map[string]int{}
	)
	if v, ok := n.attr("initial"); ok {
		t, err := c.initialTarget(n, v)
		if err != nil {
			return err
		}
		initial = t
	}
	for i := range n.Nodes {
		ch := &n.Nodes[i]
		switch ch.name() {
		case "state", "parallel", "final", "history":
			k := c.keys[ch]
			st, err := c.state(ch)
			if err != nil {
				return err
			}
			children.set(k, st)
			if firstChild == "" && ch.name() != "history" {
				firstChild = k
			}
		case "initial":
			if initial != nil {
				return fmt.Errorf("SCXML: <%s> has both an initial attribute and an <initial> element", n.name())
			}
			if len(ch.Nodes) != 1 || ch.Nodes[0].name() != "transition" || len(ch.Nodes[0].Nodes) != 0 {
				return fmt.Errorf("SCXML: <initial> must hold one <transition> without executable content (the converter has nowhere to put it)")
			}
			v, _ := ch.Nodes[0].attr("target")
			t, err := c.initialTarget(n, v)
			if err != nil {
				return err
			}
			initial = t
		case "onentry":
			a, err := c.actions(ch.Nodes)
			if err != nil {
				return err
			}
			entry = append(entry, a...)
		case "onexit":
			a, err := c.actions(ch.Nodes)
			if err != nil {
				return err
			}
			exit = append(exit, a...)
		case "transition":
			t, err := c.transition(ch)
			if err != nil {
				return err
			}
			ev, hasEvent := ch.attr("event")
			if !hasEvent {
				always = append(always, t)
				continue
			}
			descs := strings.Fields(ev)
			if len(descs) == 0 {
				return fmt.Errorf("SCXML: transition with an empty event attribute")
			}
			for _, d := range descs {
				d = strings.TrimSuffix(d, ".") // "foo." and "foo" mean the same in SCXML
				j, ok := onIndex[d]
				if !ok {
					j = len(on)
					onIndex[d] = j
					on.set(d, []any{})
				}
				on[j].v = append(on[j].v.([]any), t)
			}
		case "datamodel", "data":
			// collected by collectData
		default:
			return fmt.Errorf("SCXML: <%s> inside <%s> is not supported by the converter", ch.name(), n.name())
		}
	}
	if initial == nil && firstChild != "" && n.name() != "parallel" {
		initial = firstChild
	}
	if initial != nil {
		out.set("initial", initial)
	}
	if len(entry) > 0 {
		out.set("entry", entry)
	}
	if len(exit) > 0 {
		out.set("exit", exit)
	}
	if len(on) > 0 {
		out.set("on", on)
	}
	if len(always) > 0 {
		out.set("always", always)
	}
	if len(children) > 0 {
		out.set("states", children)
	}
	return nil
}

// initialTarget converts an initial attribute or <initial> target: a direct
// child's key when it names one child, else '#id' targets (SCXML's deep
// initial, the runtime's extension).
func (c *scxmlConverter) initialTarget(parent *xmlNode, list string) (any, error) {
	ids := strings.Fields(list)
	if len(ids) == 1 {
		for i := range parent.Nodes {
			ch := &parent.Nodes[i]
			if id, ok := ch.attr("id"); ok && isStateElem(ch) && id == ids[0] {
				return c.keys[ch], nil
			}
		}
	}
	return c.targets(list)
}

func (c *scxmlConverter) state(n *xmlNode) (ordered, error) {
	var st ordered
	if id, ok := n.attr("id"); ok {
		st.set("id", id)
	}
	switch n.name() {
	case "parallel":
		st.set("type", "parallel")
	case "final":
		st.set("type", "final")
	case "history":
		st.set("type", "history")
		typ, _ := n.attr("type")
		switch typ {
		case "", "shallow":
			st.set("history", "shallow")
		case "deep":
			st.set("history", "deep")
		default:
			return nil, fmt.Errorf("SCXML: <history type=%q>: type is shallow or deep", typ)
		}
		for i := range n.Nodes {
			ch := &n.Nodes[i]
			if ch.name() != "transition" || len(ch.Nodes) != 0 {
				return nil, fmt.Errorf("SCXML: <history> may hold only a <transition> without executable content, not <%s>", ch.name())
			}
			v, _ := ch.attr("target")
			t, err := c.targets(v)
			if err != nil {
				return nil, err
			}
			st.set("target", t)
		}
		return st, nil
	}
	if err := c.compound(n, &st); err != nil {
		return nil, err
	}
	return st, nil
}

func (c *scxmlConverter) transition(n *xmlNode) (ordered, error) {
	var t ordered
	if v, ok := n.attr("target"); ok {
		tg, err := c.targets(v)
		if err != nil {
			return nil, err
		}
		t.set("target", tg)
	}
	if v, ok := n.attr("cond"); ok {
		name, err := c.guard(v)
		if err != nil {
			return nil, err
		}
		t.set("cond", name)
	}
	switch typ, _ := n.attr("type"); typ {
	case "", "external":
	case "internal":
		t.set("internal", true)
	default:
		return nil, fmt.Errorf("SCXML: <transition type=%q>: type is internal or external", typ)
	}
	a, err := c.actions(n.Nodes)
	if err != nil {
		return nil, err
	}
	if len(a) > 0 {
		t.set("actions", a)
	}
	return t, nil
}

// actions converts executable content to the script's action list.
func (c *scxmlConverter) actions(nodes []xmlNode) ([]any, error) {
	var out []any
	for i := range nodes {
		n := &nodes[i]
		switch n.name() {
		case "assign":
			loc, _ := n.attr("location")
			expr, _ := n.attr("expr")
			name, err := c.assign(loc, expr)
			if err != nil {
				return nil, err
			}
			out = append(out, name)
		case "log":
			expr, _ := n.attr("expr")
			name := "log:" + expr
			c.impl.Actions[name] = func(*statechart.Scope) error { return nil }
			out = append(out, name)
		case "raise":
			ev, ok := n.attr("event")
			if !ok {
				return nil, fmt.Errorf("SCXML: <raise> without event")
			}
			out = append(out, ordered{{"type", "raise"}, {"event", ev}})
		default:
			return nil, fmt.Errorf("SCXML: executable content <%s> is not supported by the converter", n.name())
		}
	}
	return out, nil
}

func (c *scxmlConverter) assign(loc, expr string) (string, error) {
	if !isIdent(loc) {
		return "", fmt.Errorf("SCXML: <assign location=%q>: the converter assigns only to plain names", loc)
	}
	e, err := parseSCXMLExpr(expr)
	if err != nil {
		return "", fmt.Errorf("SCXML: <assign location=%q expr=%q>: %w", loc, expr, err)
	}
	name := "assign:" + loc + "=" + expr
	c.impl.Actions[name] = func(s *statechart.Scope) error {
		v, err := e.eval(s.Context)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		s.Context[loc] = v
		return nil
	}
	return name, nil
}

func (c *scxmlConverter) guard(expr string) (string, error) {
	e, err := parseSCXMLExpr(expr)
	if err != nil {
		return "", fmt.Errorf("SCXML: cond=%q: %w", expr, err)
	}
	name := "cond:" + expr
	// SCXML: a condition that cannot be evaluated is false.
	c.impl.Guards[name] = func(s *statechart.Scope) bool {
		v, err := e.eval(s.Context)
		b, ok := v.(bool)
		return err == nil && ok && b
	}
	return name, nil
}

// scxmlExpr is a parsed expression of the suite's ECMAScript subset.
type scxmlExpr interface {
	eval(env map[string]any) (any, error)
}

type (
	numLit  float64
	identEx string
	binEx   struct {
		op   string // + - * === !== or pow (Math.pow)
		l, r scxmlExpr
	}
)

func (n numLit) eval(map[string]any) (any, error) { return float64(n), nil }

func (id identEx) eval(env map[string]any) (any, error) {
	v, ok := env[string(id)]
	if !ok {
		return nil, fmt.Errorf("%s is not defined", string(id))
	}
	return v, nil
}

func (b binEx) eval(env map[string]any) (any, error) {
	if b.op == "===" || b.op == "!==" {
		l, err := b.l.eval(env)
		if err != nil {
			return nil, err
		}
		r, err := b.r.eval(env)
		if err != nil {
			return nil, err
		}
		lf, lok := toFloat(l)
		rf, rok := toFloat(r)
		eq := lok && rok && lf == rf
		if !lok || !rok {
			eq = reflect.DeepEqual(l, r)
		}
		return eq == (b.op == "==="), nil
	}
	l, err := evalNum(b.l, env)
	if err != nil {
		return nil, err
	}
	r, err := evalNum(b.r, env)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "+":
		return l + r, nil
	case "-":
		return l - r, nil
	case "pow":
		return math.Pow(l, r), nil
	default: // "*"
		return l * r, nil
	}
}

func evalNum(e scxmlExpr, env map[string]any) (float64, error) {
	v, err := e.eval(env)
	if err != nil {
		return 0, err
	}
	f, ok := toFloat(v)
	if !ok {
		return 0, fmt.Errorf("%v (%T) is not a number", v, v)
	}
	return f, nil
}

// toFloat accepts the number types a context may hold after the runtime
// copied it (JSON decoding gives float64 or json.Number).
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func isIdent(s string) bool {
	for i, r := range s {
		if !(r == '_' || r == '$' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))) {
			return false
		}
	}
	return s != ""
}

// parseSCXMLExpr parses: cmp := add [('===' | '!==') add]; add := mul
// {('+' | '-') mul}; mul := unary {'*' unary}; unary := number | name |
// 'Math.pow(' cmp ',' cmp ')' | '(' cmp ')' | '-' unary.
func parseSCXMLExpr(src string) (scxmlExpr, error) {
	p := &exprParser{src: src}
	if err := p.lex(); err != nil {
		return nil, err
	}
	e, err := p.cmp()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("expression %q: unexpected %q", src, p.toks[p.pos])
	}
	return e, nil
}

type exprParser struct {
	src  string
	toks []string
	pos  int
}

func (p *exprParser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(s[i:], "===") || strings.HasPrefix(s[i:], "!=="):
			p.toks = append(p.toks, s[i:i+3])
			i += 3
		case strings.ContainsRune("+-*(),", rune(c)):
			p.toks = append(p.toks, s[i:i+1])
			i++
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			p.toks = append(p.toks, s[i:j])
			i = j
		case c == '_' || c == '$' || c < 0x80 && unicode.IsLetter(rune(c)):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] == '.' || s[j] < 0x80 && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])))) {
				j++
			}
			p.toks = append(p.toks, s[i:j])
			i = j
		default:
			return fmt.Errorf("expression %q: %q is outside the subset the test evaluator knows (numbers, names, + - *, Math.pow, ===)", p.src, c)
		}
	}
	return nil
}

func (p *exprParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *exprParser) expect(tok string) error {
	if p.peek() != tok {
		return fmt.Errorf("expression %q: want %q, found %q", p.src, tok, p.peek())
	}
	p.pos++
	return nil
}

func (p *exprParser) cmp() (scxmlExpr, error) {
	l, err := p.add()
	if err != nil {
		return nil, err
	}
	if op := p.peek(); op == "===" || op == "!==" {
		p.pos++
		r, err := p.add()
		if err != nil {
			return nil, err
		}
		return binEx{op, l, r}, nil
	}
	return l, nil
}

func (p *exprParser) add() (scxmlExpr, error) {
	l, err := p.mul()
	if err != nil {
		return nil, err
	}
	for op := p.peek(); op == "+" || op == "-"; op = p.peek() {
		p.pos++
		r, err := p.mul()
		if err != nil {
			return nil, err
		}
		l = binEx{op, l, r}
	}
	return l, nil
}

func (p *exprParser) mul() (scxmlExpr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek() == "*" {
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = binEx{"*", l, r}
	}
	return l, nil
}

func (p *exprParser) unary() (scxmlExpr, error) {
	tok := p.peek()
	switch {
	case tok == "":
		return nil, fmt.Errorf("expression %q: %w", p.src, io.ErrUnexpectedEOF)
	case tok == "-":
		p.pos++
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		return binEx{"-", numLit(0), e}, nil
	case tok == "(":
		p.pos++
		e, err := p.cmp()
		if err != nil {
			return nil, err
		}
		return e, p.expect(")")
	case tok == "Math.pow":
		p.pos++
		if err := p.expect("("); err != nil {
			return nil, err
		}
		b, err := p.cmp()
		if err != nil {
			return nil, err
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
		e, err := p.cmp()
		if err != nil {
			return nil, err
		}
		return binEx{"pow", b, e}, p.expect(")")
	case tok[0] >= '0' && tok[0] <= '9':
		p.pos++
		f, err := strconv.ParseFloat(tok, 64)
		if err != nil {
			return nil, fmt.Errorf("expression %q: bad number %q", p.src, tok)
		}
		return numLit(f), nil
	case isIdent(tok):
		p.pos++
		return identEx(tok), nil
	}
	return nil, fmt.Errorf("expression %q: unexpected %q (outside the subset: numbers, names, + - *, Math.pow, ===)", p.src, tok)
}

// TestSCXMLConvert checks the converter on a document that uses each form it
// converts, without the SCION suite.
func TestSCXMLConvert(t *testing.T) {
	src := `<?xml version="1.0"?>
<!-- a comment -->
<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="p">
  <datamodel><data id="x" expr="2"/></datamodel>
  <transition event="*"><log expr="x"/></transition>
  <parallel id="p">
    <history id="h" type="deep"><transition target="a.1 b"/></history>
    <state id="a">
      <initial><transition target="a.1"/></initial>
      <onentry><assign location="x" expr="x * 3"/></onentry>
      <onexit><raise event="left"/></onexit>
      <state id="a.1"><transition event="t u." target="a.2" type="internal" cond="x === 6"/></state>
      <state id="a.2"><transition cond="x !== 6"/></state>
    </state>
    <state id="b"/>
  </parallel>
  <final id="f"/>
</scxml>`
	want := `{"id":"scxml","context":{"x":2},"initial":"p","on":{"*":[{"actions":["log:x"]}]},` +
		`"states":{"p":{"id":"p","type":"parallel","states":{` +
		`"h":{"id":"h","type":"history","history":"deep","target":["#scxml.p.a.a_1","#b"]},` +
		`"a":{"id":"a","initial":"a_1","entry":["assign:x=x * 3"],"exit":[{"type":"raise","event":"left"}],"states":{` +
		`"a_1":{"id":"a.1","on":{"t":[{"target":"#scxml.p.a.a_2","cond":"cond:x === 6","internal":true}],` +
		`"u":[{"target":"#scxml.p.a.a_2","cond":"cond:x === 6","internal":true}]}},` +
		`"a_2":{"id":"a.2","always":[{"cond":"cond:x !== 6"}]}}},` +
		`"b":{"id":"b"}}},"f":{"id":"f","type":"final"}}}`
	c, err := convertSCXML([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := json.Compact(&got, c.Script); err != nil {
		t.Fatal(err)
	}
	if got.String() != want {
		t.Errorf("converted:\n%s\nwant:\n%s", got.String(), want)
	}
	ctx := map[string]any{"x": 2.0}
	if err := c.Impl.Actions["assign:x=x * 3"](&statechart.Scope{Context: ctx}); err != nil || ctx["x"] != 6.0 {
		t.Errorf("assign:x=x * 3 on x=2: x=%v, err %v; want 6", ctx["x"], err)
	}
	if !c.Impl.Guards["cond:x === 6"](&statechart.Scope{Context: ctx}) || c.Impl.Guards["cond:x !== 6"](&statechart.Scope{Context: ctx}) {
		t.Error("with x=6, cond x === 6 is false or x !== 6 is true")
	}
	if _, ok := c.Impl.Actions["log:x"]; !ok {
		t.Error("no log:x action")
	}

	for _, bad := range []struct{ src, msg string }{
		{`<scxml><state id="a"><send event="e"/></state></scxml>`, "<send> inside <state>"},
		{`<scxml><state id="a"><onentry><script/></onentry></state></scxml>`, "<script> is not supported"},
		{`<scxml><state id="a"><transition target="nowhere"/></state></scxml>`, `target "nowhere" is not a state id`},
		{`<scxml><state id="a"/><state id="a"/></scxml>`, `"a" is used twice`},
		{`<scxml><state id="a.b"/><state id="a_b"/></scxml>`, `the key "a_b"`},
		{`<scxml><datamodel><data id="s" expr="'text'"/></datamodel></scxml>`, `outside the subset`},
		{`<state id="a"/>`, "not <scxml>"},
	} {
		if _, err := convertSCXML([]byte(bad.src)); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("convertSCXML(%s): error %v, want one containing %q", bad.src, err, bad.msg)
		}
	}
}

// TestSCXMLExpr checks the evaluator of the suite's expression subset.
func TestSCXMLExpr(t *testing.T) {
	env := map[string]any{"x": 4410.0, "i": 3, "n": json.Number("2")}
	for _, c := range []struct {
		expr string
		want any
	}{
		{"0", 0.0},
		{"x + 1", 4411.0},
		{"x +1", 4411.0},
		{"i - 3", 0.0},
		{"i * 20", 60.0},
		{"1 + 2 * 3", 7.0},
		{"(1 + 2) * 3", 9.0},
		{"10 - 2 - 3", 5.0},
		{"-i + n", -1.0},
		{"Math.pow(i,3)", 27.0},
		{"Math.pow(n, i) === 8", true},
		{"x === 4410", true},
		{"x === 1470", false},
		{"x !== 1470", true},
	} {
		e, err := parseSCXMLExpr(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		got, err := e.eval(env)
		if err != nil || got != c.want {
			t.Errorf("%s = %v (%T), err %v; want %v", c.expr, got, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "x +", "Math.pow(x)", "(x", "x y", "x / 2", "'s'"} {
		if _, err := parseSCXMLExpr(bad); err == nil {
			t.Errorf("%q parsed; want an error", bad)
		}
	}
	if e, err := parseSCXMLExpr("y + 1"); err != nil {
		t.Error(err)
	} else if _, err := e.eval(env); err == nil || !strings.Contains(err.Error(), "y is not defined") {
		t.Errorf("y + 1 with no y: error %v, want y is not defined", err)
	}
}
