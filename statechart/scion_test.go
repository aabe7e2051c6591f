package statechart_test

// The SCION SCXML conformance suite (the npm package
// @scion-scxml/test-framework) run against the runtime: each test's SCXML is
// converted to a script (scxml_test.go), started, sent the test's events one
// macrostep at a time, and its active atomic states compared, as a set of
// state ids, with the configuration the test expects after each step.
//
// The suite is not vendored. The tests look for it in $STATEBUS_SCION_DIR,
// then testdata/scion, then $XDG_CACHE_HOME/statebus-scion/<version>/package
// (where .ci/run installs it), and skip, saying how to get it, when it is in
// none of them. docs/statecharts.md ("Conformance: SCION") has the table and
// the failures.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statebus/statebus/statechart"
)

const scionVersion = "2.0.16"

// scionGroups are the suite's groups that exercise the statechart structure
// (rather than a datamodel, <send> or <invoke>), with the number of tests each
// has in scionVersion.
var scionGroups = []struct {
	name  string
	tests int
}{
	{"basic", 3},
	{"hierarchy", 3},
	{"hierarchy+documentOrder", 2},
	{"documentOrder", 1},
	{"parallel", 4},
	{"more-parallel", 15},
	{"parallel+interrupt", 34},
	{"history", 8},
	{"internal-transitions", 2},
	{"targetless-transition", 4},
	{"default-initial-state", 2},
}

// knownSCIONFailures are the tests, "group/name", that fail for a reason
// docs/statecharts.md explains. A test listed here that passes fails, so the
// list cannot outlive the reason.
var knownSCIONFailures = map[string]scionKnown{
	"more-parallel/test10":  scionSwapped,
	"more-parallel/test10b": scionSwapped,
}

// scionKnown is why a test is expected to fail.
type scionKnown struct {
	reason string
	// legacyIsW3C: the suite's answer is wrong and its "legacySemantics"
	// answer is the W3C one, which the test is then held to instead.
	legacyIsW3C bool
}

// scionSwapped: in more-parallel/test10 and test10b the suite's answer and its
// legacySemantics answer are swapped. A transition from a region a of a
// parallel state p to a itself has the W3C transition domain scxml, not a (the
// least common compound ancestor skips the parallel p), so it exits and
// re-enters p as well, as the same suite's more-parallel/test2, test3 and test6
// expect; the published answers of test10 and test10b assume only a is exited.
var scionSwapped = scionKnown{
	reason: "the suite's answer is SCION's legacy semantics (its answer and legacySemantics are swapped, unlike more-parallel/test2); " +
		"the W3C algorithm exits and re-enters the parallel state p on the self-transition a->a",
	legacyIsW3C: true,
}

// scionCaseTimeout bounds one test, so that a runtime stuck in a loop of
// microsteps shows as that test's failure rather than the package's timeout.
const scionCaseTimeout = 30 * time.Second

// scionHowTo says how to get the suite.
const scionHowTo = "to install it, run from the repository root: (cd statechart/testdata && npm pack @scion-scxml/test-framework@" + scionVersion +
	" && mkdir -p scion && tar xzf scion-scxml-test-framework-" + scionVersion + ".tgz -C scion --strip-components=1)" +
	", or set STATEBUS_SCION_DIR to the unpacked package (the directory holding test/basic)"

// scionDir returns the suite's directory (the one holding test/<group>), or
// skips the test when the suite is not installed.
func scionDir(t *testing.T) string {
	t.Helper()
	var dir string
	if env := os.Getenv("STATEBUS_SCION_DIR"); env != "" {
		if !isSCIONDir(env) {
			t.Fatalf("STATEBUS_SCION_DIR=%s holds no test/basic/*.scxml; %s", env, scionHowTo)
		}
		dir = env
	} else {
		looked := []string{"testdata/scion"}
		if cache, err := os.UserCacheDir(); err == nil {
			looked = append(looked, filepath.Join(cache, "statebus-scion", scionVersion, "package"))
		}
		for _, d := range looked {
			if isSCIONDir(d) {
				dir = d
				break
			}
		}
		if dir == "" {
			t.Skipf("SCION conformance suite not installed (STATEBUS_SCION_DIR is unset; looked in %s); %s",
				strings.Join(looked, ", "), scionHowTo)
		}
	}
	var pkg struct{ Name, Version string }
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil {
		t.Fatalf("SCION suite at %s: reading its package.json: %v; %s", dir, err, scionHowTo)
	}
	if pkg.Version != scionVersion {
		t.Fatalf("SCION suite at %s is version %s; these tests and their expected results are for %s; %s",
			dir, pkg.Version, scionVersion, scionHowTo)
	}
	return dir
}

func isSCIONDir(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "test", "basic", "*.scxml"))
	return len(m) > 0
}

// scionCase is one test of the suite.
type scionCase struct {
	group, name string
	scxml, json string // file paths
}

func (c scionCase) id() string { return c.group + "/" + c.name }

func scionCases(t *testing.T, dir string, group string) []scionCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "test", group, "*.scxml"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	var cs []scionCase
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".scxml")
		cs = append(cs, scionCase{group: group, name: name, scxml: f, json: strings.TrimSuffix(f, ".scxml") + ".json"})
	}
	return cs
}

// scionExpect is a test's .json: the configuration after start and after
// each event. LegacySemantics, in a few tests, is the answer under SCION's
// earlier semantics; it is used only where knownSCIONFailures says so.
type scionExpect struct {
	scionAnswer
	LegacySemantics *scionAnswer `json:"legacySemantics"`
}

type scionAnswer struct {
	InitialConfiguration []string `json:"initialConfiguration"`
	Events               []struct {
		Event struct {
			Name string `json:"name"`
		} `json:"event"`
		NextConfiguration []string `json:"nextConfiguration"`
	} `json:"events"`
}

// run runs the test against its answer (or, with legacy, against its
// legacySemantics answer) and returns the first discrepancy, or nil.
func (c scionCase) run(legacy bool) error {
	done := make(chan error, 1)
	go func() { done <- c.runNow(legacy) }()
	select {
	case err := <-done:
		return err
	case <-time.After(scionCaseTimeout):
		return fmt.Errorf("did not finish in %v (a macrostep that never ends?)", scionCaseTimeout)
	}
}

func (c scionCase) runNow(legacy bool) error {
	src, err := os.ReadFile(c.scxml)
	if err != nil {
		return err
	}
	var want scionExpect
	b, err := os.ReadFile(c.json)
	if err == nil {
		err = json.Unmarshal(b, &want)
	}
	if err != nil {
		return fmt.Errorf("expected results: %w", err)
	}
	answer := want.scionAnswer
	if legacy {
		if want.LegacySemantics == nil {
			return fmt.Errorf("%s has no legacySemantics answer", c.json)
		}
		answer = *want.LegacySemantics
	}
	chart, err := convertSCXML(src)
	if err != nil {
		return fmt.Errorf("converting: %w", err)
	}
	def, err := statechart.Load(chart.Script, chart.Impl, statechart.WithFilename(c.id()+".json"))
	if err != nil {
		return fmt.Errorf("loading the converted script: %w\n%s", err, chart.Script)
	}
	m := def.New()
	defer m.Stop()
	if err := m.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := sameConfiguration(answer.InitialConfiguration, m.LeafIDs()); err != nil {
		return fmt.Errorf("initial configuration: %w", err)
	}
	for i, step := range answer.Events {
		before := m.LeafIDs()
		if _, err := m.Send(statechart.Event{Name: step.Event.Name}); err != nil {
			return fmt.Errorf("event %d (%s) in %v: Send: %w", i+1, step.Event.Name, before, err)
		}
		if err := sameConfiguration(step.NextConfiguration, m.LeafIDs()); err != nil {
			return fmt.Errorf("event %d (%s) in %v: %w", i+1, step.Event.Name, before, err)
		}
	}
	return nil
}

// sameConfiguration compares configurations as sets of state ids.
func sameConfiguration(want, got []string) error {
	w, g := slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got))
	if !slices.Equal(w, g) {
		return fmt.Errorf("configuration %v, want %v", g, w)
	}
	return nil
}

// check runs the test as the suite publishes it and returns nil when the
// outcome is the one expected: a pass, or for a known failure a failure (and,
// where the suite's legacySemantics answer is the W3C one, a pass against
// that). note says what was expected to fail.
func (c scionCase) check() (published error, note string, err error) {
	published = c.run(false)
	known, isKnown := knownSCIONFailures[c.id()]
	switch {
	case !isKnown:
		return published, "", published
	case published == nil:
		return nil, "", fmt.Errorf("passes, but knownSCIONFailures lists it (%s): remove it there and in docs/statecharts.md", known.reason)
	case known.legacyIsW3C:
		if err := c.run(true); err != nil {
			return published, "", fmt.Errorf("against the W3C answer (its legacySemantics block): %w", err)
		}
		return published, fmt.Sprintf("known failure (%s), and passes the W3C answer: %v", known.reason, published), nil
	default:
		return published, fmt.Sprintf("known failure (%s): %v", known.reason, published), nil
	}
}

// TestSCION runs each test of the suite's structural groups as a subtest,
// group/name.
func TestSCION(t *testing.T) {
	dir := scionDir(t)
	for _, g := range scionGroups {
		for _, c := range scionCases(t, dir, g.name) {
			t.Run(c.id(), func(t *testing.T) {
				_, note, err := c.check()
				switch {
				case err != nil:
					t.Error(err)
				case note != "" && knownSCIONFailures[c.id()].legacyIsW3C:
					t.Log(note)
				case note != "":
					t.Skip(note)
				}
			})
		}
	}
}

// TestSCIONTable runs the same tests and logs the table docs/statecharts.md
// shows: for each group, how many tests pass the suite's published answers,
// and how many pass with the answers knownSCIONFailures shows to be wrong
// replaced by the W3C ones. It fails when a group does not have the number of
// tests the suite's version has, or when a test's outcome is not the expected
// one (see check).
func TestSCIONTable(t *testing.T) {
	dir := scionDir(t)
	var (
		table, notes         strings.Builder
		pass, w3cPass, total int
	)
	fmt.Fprintf(&table, "SCION %s, %s\n\n| group | passed/total | with W3C answers |\n|---|---|---|\n", scionVersion, dir)
	for _, g := range scionGroups {
		cases := scionCases(t, dir, g.name)
		if len(cases) != g.tests {
			t.Errorf("group %s has %d tests, want %d (the suite of version %s): is the copy at %s complete?",
				g.name, len(cases), g.tests, scionVersion, dir)
		}
		p, w := 0, 0
		for _, c := range cases {
			published, note, err := c.check()
			if published == nil {
				p++
			}
			if published == nil || (err == nil && knownSCIONFailures[c.id()].legacyIsW3C) {
				w++
			}
			if err != nil {
				t.Errorf("%s: %v", c.id(), err)
				fmt.Fprintf(&notes, "%s: FAIL: %v\n", c.id(), err)
			} else if note != "" {
				fmt.Fprintf(&notes, "%s: %s\n", c.id(), note)
			}
		}
		fmt.Fprintf(&table, "| %s | %d/%d | %d/%d |\n", g.name, p, len(cases), w, len(cases))
		pass += p
		w3cPass += w
		total += len(cases)
	}
	fmt.Fprintf(&table, "| **total** | **%d/%d** | **%d/%d** |\n", pass, total, w3cPass, total)
	if notes.Len() > 0 {
		table.WriteString("\n")
		table.WriteString(notes.String())
	}
	t.Log("\n" + table.String())
}
