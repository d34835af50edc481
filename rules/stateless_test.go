package rules

import (
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// TestStatelessTableTracksNothing: a policy that neither queues nor reads
// state installs a table without ct expressions, so the kernel tracks no
// connection in the namespace; a reload to a policy that reads state turns
// tracking on, and one back turns it off, each refilling the base chain in
// place.
func TestStatelessTableTracksNothing(t *testing.T) {
	requireKernel(t, "conntrack")
	ns := newTestNS(t)
	ns.mustRun(t, "", "ip", "link", "set", "lo", "up")
	cfg := testConfig(t)
	cfg.Hooks = []nf.Hook{nf.HookOutput}
	cfg.AcceptLoopback = false
	stateless := "version: 1\nrules:\n  - {name: out, match: {proto: udp, dport: 9999}, action: accept}\n"
	stateful := "version: 1\nrules:\n  - {name: est, match: {state: established}, action: accept}\n  - {name: out, match: {proto: udp, dport: 9999}, action: accept}\n"
	cfg.Plan = compileText(t, cfg, stateless)
	if !cfg.Plan.Stateless() {
		t.Fatal("plan of an L3/L4 policy without state is not stateless")
	}
	if text := Render(cfg); strings.Contains(text, " ct ") {
		t.Fatalf("stateless table has ct expressions:\n%s", text)
	}
	tb, err := Install(ns.conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	flows := func(port string) int {
		ns.mustRun(t, "", "bash", "-c", "echo x > /dev/udp/127.0.0.1/"+port)
		out, _ := ns.run(t, "", "conntrack", "-L", "-p", "udp", "--dport", port)
		return strings.Count(out, "dport="+port+" ")
	}
	if n := flows("9999"); n != 0 {
		t.Fatalf("stateless table: conntrack holds %d entries for the flow", n)
	}
	if h, _ := tb.RuleHits(); h["out"] != 1 {
		t.Fatalf("stateless table: rule out hit %d times, want 1", h["out"])
	}
	for i, step := range []struct {
		policy string
		track  bool
	}{{stateful, true}, {stateless, false}} {
		plan := compileText(t, cfg, step.policy)
		if err := tb.SetPlan(plan, uint32(5+i)); err != nil {
			t.Fatal(err)
		}
		if err := tb.Verify(); err != nil {
			t.Fatalf("after reload to stateless=%v: %v", plan.Stateless(), err)
		}
		port := []string{"9998", "9997"}[i]
		if n := flows(port); (n > 0) != step.track {
			t.Fatalf("reload %d (stateless=%v): conntrack holds %d entries for a new flow", i, plan.Stateless(), n)
		}
	}
	if err := tb.EndPickup(); err != nil {
		t.Fatal(err)
	}
}

// TestStatelessGuarded: for well-formed packets, Guarded of a
// stateless plan says exactly which ones its guards queue: IPv4 with
// options and IPv6 with extension headers.
func TestStatelessGuarded(t *testing.T) {
	cfg := testConfig(t)
	plan := compileText(t, cfg, "version: 1\nrules:\n  - {name: a, match: {proto: udp}, action: accept}\n")
	if !plan.Stateless() {
		t.Fatal("not stateless")
	}
	for _, c := range []struct {
		fam          packet.Family
		hlen, length int
		want         bool
	}{
		{packet.IPv4, 20, 60, false}, {packet.IPv4, 24, 60, true}, {packet.IPv6, 40, 60, false}, {packet.IPv6, 48, 68, true},
		{packet.IPv4, 20, 27, true}, // a non-first fragment shorter than a UDP header
	} {
		pk := &packet.Packet{Family: c.fam, Proto: packet.ProtoUDP, HeaderLen: c.hlen, Length: c.length}
		if got := plan.Guarded(&policies.Input{Pkt: pk, State: nf.StateInvalid}); got != c.want {
			t.Errorf("%v header %d length %d: Guarded %v, want %v", c.fam, c.hlen, c.length, got, c.want)
		}
	}
}
