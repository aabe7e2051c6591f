package router

import (
	"fmt"
	"slices"
	"strings"
)

// RouteRule is one operator routing rule: events matching Match get the
// Action. Rules are tried in order.
type RouteRule struct {
	// Match selects events (globs over EventName, SourceMachineId and
	// TargetMachineId; empty matches anything).
	Match RuleMatch `json:"Match"`
	// Action is "copy" (send a copy To a machine or "@group" and go on
	// with the next rules), "redirect" (deliver To another machine instead,
	// then apply the rules again for the new target) or "drop" (refuse the
	// event with Reason).
	Action string `json:"Action"`
	To     string `json:"To"`
	Reason string `json:"Reason"`
}

// RuleMatch is a rule's filter, spelled as in the config file.
type RuleMatch struct {
	EventName       string `json:"EventName"`
	SourceMachineId string `json:"SourceMachineId"`
	TargetMachineId string `json:"TargetMachineId"`
}

func (m RuleMatch) filter() Filter {
	return Filter{EventName: m.EventName, Source: m.SourceMachineId, Target: m.TargetMachineId}
}

// Rules is a checked, ordered rule list.
type Rules struct {
	rules []RouteRule
}

// Decision is what the rules decided for one event.
type Decision struct {
	// Redirect, when not empty, is where the event goes instead of its
	// own target.
	Redirect string
	// Copies lists where copies go.
	Copies []string
	// Dropped is set when a drop rule refused the event, with Reason.
	Dropped bool
	Reason  string
}

// maxRedirects bounds chained redirects at run time; loops are refused
// when the rules are loaded, so this only guards against a bug.
const maxRedirects = 16

// CompileRules checks rules: known actions, a To where one is needed, and
// no redirect loop (a -> b -> a), found when the rules are loaded rather
// than when an event runs into one.
func CompileRules(rules []RouteRule) (*Rules, error) {
	for i, r := range rules {
		switch r.Action {
		case "copy", "redirect":
			if r.To == "" {
				return nil, fmt.Errorf("routing rule %d (%s): To is empty", i+1, r.Action)
			}
			if r.Action == "redirect" && (r.To == "*" || strings.HasPrefix(r.To, "@")) {
				return nil, fmt.Errorf("routing rule %d: redirect To must be one machine id, not %q", i+1, r.To)
			}
		case "drop":
			if r.Reason == "" {
				rules[i].Reason = "dropped by a routing rule"
			}
		default:
			return nil, fmt.Errorf("routing rule %d: Action %q is not copy, redirect or drop", i+1, r.Action)
		}
	}
	// A redirect rule r leads to rule s when r's To matches s's target
	// pattern. (The name and source patterns are not compared: a possible
	// loop is refused even if no event could take it.)
	next := func(i int) []int {
		var out []int
		for j, s := range rules {
			if s.Action == "redirect" && glob(s.Match.TargetMachineId, []byte(rules[i].To)) {
				out = append(out, j)
			}
		}
		return out
	}
	state := make([]int, len(rules)) // 0 new, 1 on the path, 2 done
	var path []int
	var visit func(i int) error
	visit = func(i int) error {
		state[i] = 1
		path = append(path, i)
		for _, j := range next(i) {
			if state[j] == 1 {
				var hops []string
				for _, k := range path[indexOf(path, j):] {
					hops = append(hops, fmt.Sprintf("rule %d (%s -> %s)", k+1, orAny(rules[k].Match.TargetMachineId), rules[k].To))
				}
				return fmt.Errorf("routing rules loop: %s, back to rule %d", strings.Join(hops, ", "), j+1)
			}
			if state[j] == 0 {
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[i] = 2
		return nil
	}
	for i, r := range rules {
		if r.Action == "redirect" && state[i] == 0 {
			if err := visit(i); err != nil {
				return nil, err
			}
		}
	}
	return &Rules{rules: rules}, nil
}

func indexOf(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

func orAny(p string) string {
	if p == "" {
		return "*"
	}
	return p
}

// Len returns the number of rules.
func (rs *Rules) Len() int { return len(rs.rules) }

// Apply runs the rules for one event. copies is reused for the result's
// Copies.
func (rs *Rules) Apply(name, source, target []byte, copies []string) Decision {
	d := Decision{Copies: copies[:0]}
	tgt := target
	for hops, i := 0, 0; i < len(rs.rules); i++ {
		r := &rs.rules[i]
		f := r.Match.filter()
		if !glob(f.EventName, name) || !glob(f.Source, source) || !glob(f.Target, tgt) {
			continue
		}
		switch r.Action {
		case "copy":
			if !slices.Contains(d.Copies, r.To) { // rules run again after a redirect
				d.Copies = append(d.Copies, r.To)
			}
		case "drop":
			d.Dropped, d.Reason = true, r.Reason
			return d
		case "redirect":
			if hops++; hops > maxRedirects {
				d.Dropped, d.Reason = true, "too many redirects"
				return d
			}
			d.Redirect, tgt = r.To, []byte(r.To)
			i = -1 // the rules apply again for the new target
		}
	}
	return d
}
