package router

import (
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	rs, err := CompileRules([]RouteRule{
		{Match: RuleMatch{EventName: "ORDER_*"}, Action: "copy", To: "audit"},
		{Match: RuleMatch{EventName: "DEBUG_*"}, Action: "drop", Reason: "debug events are off"},
		{Match: RuleMatch{TargetMachineId: "billing"}, Action: "redirect", To: "billing-v2"},
		{Match: RuleMatch{TargetMachineId: "billing-v2", EventName: "ORDER_*"}, Action: "copy", To: "@analytics"},
		{Match: RuleMatch{EventName: "*"}, Action: "drop"}, // order: only reached by what no rule above stopped
	})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(name, src, tgt string) Decision {
		return rs.Apply([]byte(name), []byte(src), []byte(tgt), nil)
	}
	d := apply("ORDER_PLACED", "shop", "billing")
	// The last rule drops everything else, including this: order matters.
	if !d.Dropped || d.Redirect != "billing-v2" || strings.Join(d.Copies, ",") != "audit,@analytics" {
		t.Fatalf("ORDER_PLACED: %+v", d)
	}
	if d := apply("DEBUG_X", "a", "b"); !d.Dropped || d.Reason != "debug events are off" || len(d.Copies) != 0 {
		t.Fatalf("DEBUG_X: %+v", d)
	}
	rs2, _ := CompileRules([]RouteRule{{Match: RuleMatch{TargetMachineId: "b"}, Action: "redirect", To: "c"}})
	if d := rs2.Apply([]byte("E"), []byte("a"), []byte("b"), nil); d.Redirect != "c" || d.Dropped {
		t.Fatalf("redirect: %+v", d)
	}
	if d := rs2.Apply([]byte("E"), []byte("a"), []byte("x"), nil); d.Redirect != "" || d.Dropped {
		t.Fatalf("no rule: %+v", d)
	}
}

func TestRuleLoops(t *testing.T) {
	_, err := CompileRules([]RouteRule{
		{Match: RuleMatch{TargetMachineId: "a"}, Action: "redirect", To: "b"},
		{Match: RuleMatch{TargetMachineId: "b"}, Action: "redirect", To: "a"},
	})
	if err == nil || err.Error() != "routing rules loop: rule 1 (a -> b), rule 2 (b -> a), back to rule 1" {
		t.Fatalf("a -> b -> a: %v", err)
	}
	_, err = CompileRules([]RouteRule{{Match: RuleMatch{TargetMachineId: "svc-*"}, Action: "redirect", To: "svc-2"}})
	if err == nil || !strings.Contains(err.Error(), "routing rules loop") {
		t.Fatalf("a redirect into its own pattern: %v", err)
	}
	for _, bad := range []RouteRule{
		{Action: "forward", To: "x"}, {Action: "copy"}, {Action: "redirect", To: "@g"},
	} {
		if _, err := CompileRules([]RouteRule{bad}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := CompileRules([]RouteRule{
		{Match: RuleMatch{TargetMachineId: "a"}, Action: "redirect", To: "b"},
		{Match: RuleMatch{TargetMachineId: "b"}, Action: "redirect", To: "c"},
	}); err != nil {
		t.Fatalf("a chain without a loop: %v", err)
	}
}
