package router

import (
	"fmt"
	"path"
	"testing"
	"unicode/utf8"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		ok   bool
	}{
		{"ORDER_*", "ORDER_PLACED", true}, {"ORDER_*", "ORDER_", true}, {"ORDER_*", "ORDE", false},
		{"sensor-?", "sensor-1", true}, {"sensor-?", "sensor-12", false}, {"*-*-*", "a-b-c", true},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"*", "any/thing", true}, {"x", "x", true},
		{"a/*", "a/b/c", true}, // "*" crosses "/" (unlike path.Match)
	} {
		if got := glob(tc.p, []byte(tc.s)); got != tc.ok {
			t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// FuzzGlob: on ASCII without "/" (and without path.Match's classes), glob
// agrees with path.Match.
func FuzzGlob(f *testing.F) {
	f.Add("a*b?c", "axbyc")
	f.Fuzz(func(t *testing.T, p, s string) {
		for _, c := range p + s {
			// path.Match's classes, "/" and its byte-wise handling of
			// multi-byte characters after a star differ by design.
			if c >= utf8.RuneSelf || c == '/' || c == '[' || c == '\\' || c == ']' || c == '-' || c == '^' {
				return
			}
		}
		want, _ := path.Match(p, s)
		if got := glob(p, []byte(s)); got != want && p != "" {
			t.Fatalf("glob(%q, %q) = %v, path.Match says %v", p, s, got, want)
		}
	})
}

func TestWatches(t *testing.T) {
	ws := NewWatches[int]()
	ws.Add(&Watch[int]{ID: 1, Owner: 10, Filter: Filter{EventName: "ALARM"}})
	ws.Add(&Watch[int]{ID: 2, Owner: 10, Filter: Filter{EventName: "ALARM_*"}})
	ws.Add(&Watch[int]{ID: 3, Owner: 20, Filter: Filter{Source: "sensor-*"}})
	ws.Add(&Watch[int]{ID: 4, Owner: 20, Filter: Filter{EventName: "*_DONE", Target: "b"}})
	ids := func(name, src, tgt string) string {
		var out []uint64
		for _, w := range ws.Match(nil, []byte(name), []byte(src), []byte(tgt)) {
			out = append(out, w.ID)
		}
		return fmt.Sprint(out)
	}
	for _, tc := range []struct{ name, src, tgt, want string }{
		{"ALARM", "a", "b", "[1]"},
		{"ALARM_FIRE", "sensor-1", "b", "[2 3]"},
		{"JOB_DONE", "a", "b", "[4]"},
		{"JOB_DONE", "a", "c", "[]"},
		{"PING", "a", "b", "[]"},
	} {
		if got := ids(tc.name, tc.src, tc.tgt); got != tc.want {
			t.Errorf("%s %s->%s matched %s, want %s", tc.name, tc.src, tc.tgt, got, tc.want)
		}
	}
	if ws.Remove(20, 1) {
		t.Error("removed another owner's watch")
	}
	ws.RemoveAll(10, []uint64{1, 2, 3}) // 3 is another owner's: kept
	if got := ids("ALARM_FIRE", "sensor-1", "b"); got != "[3]" {
		t.Errorf("after RemoveAll: %s", got)
	}
}

// BenchmarkMatch: the cost of matching one event against 0, 100 and
// 10,000 installed filters that cannot match it (exact names and prefixes
// of other events), plus one that does.
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{0, 100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ws := NewWatches[int]()
			for i := range n {
				f := Filter{EventName: fmt.Sprintf("OTHER_%d", i)}
				if i%2 == 1 {
					f.EventName = fmt.Sprintf("P%d_*", i)
				}
				ws.Add(&Watch[int]{ID: uint64(i + 1), Owner: i, Filter: f})
			}
			name, src, tgt := []byte("ORDER_PLACED"), []byte("shop"), []byte("billing")
			var dst []*Watch[int]
			b.ReportAllocs()
			for b.Loop() {
				dst = ws.Match(dst[:0], name, src, tgt)
			}
		})
	}
}

func TestGlobCharacters(t *testing.T) {
	if !glob("?", []byte("܌")) || glob("*??", []byte("⟮")) || !glob("*?", []byte("⟮")) {
		t.Fatal(`"?" must match one character, not one byte`)
	}
}
