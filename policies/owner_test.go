package policies_test

import (
	"fmt"
	"math/rand/v2"
	"os/user"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/policies/policytest"
)

// fakeNames resolves a fixed user and group database.
type fakeNames struct{}

var fakeUsers = map[string]uint32{"root": 0, "www-data": 33, "alice": 1000, "nobody": 65534, "svc": 100000}
var fakeGroups = map[string]uint32{"root": 0, "www-data": 33, "users": 100}

func (fakeNames) LookupUser(name string) (uint32, error) {
	if id, ok := fakeUsers[name]; ok {
		return id, nil
	}
	return 0, user.UnknownUserError(name)
}

func (fakeNames) LookupGroup(name string) (uint32, error) {
	if id, ok := fakeGroups[name]; ok {
		return id, nil
	}
	return 0, user.UnknownGroupError(name)
}

func loadNames(t testing.TB, policy string) (*policies.Policy, error) {
	t.Helper()
	return policyload.LoadWithNames("p.yaml", []byte(policy), nil, fakeNames{})
}

func compileNames(t testing.TB, policy string) *policies.Program {
	t.Helper()
	return compileWith(t, policy, fakeNames{})
}

func TestOwnerLoadErrors(t *testing.T) {
	tests := []struct {
		name, policy string
		at, msg      string
	}{
		{"unknown user", head + "rules:\n  - name: x\n    hook: output\n    match: {uid: [0, nosuchuser]}\n    action: accept\n",
			"p.yaml:5:22", `unknown user "nosuchuser" on this host`},
		{"unknown group", head + "rules:\n  - name: x\n    hook: output\n    match: {gid: wheel}\n    action: accept\n",
			"p.yaml:5:18", `unknown group "wheel"`},
		{"unknown user in set", head + "sets:\n  svc: [alice, bob]\nrules:\n  - name: x\n    hook: output\n    match: {uid: $svc}\n    action: accept\n",
			"p.yaml:7:18", `unknown user "bob" (in set $svc)`},
		{"address set", head + "sets:\n  n: [10.0.0.0/8]\nrules:\n  - name: x\n    match: {uid: $n}\n    action: accept\n",
			"p.yaml:6:18", "address set"},
		{"forward only", head + "rules:\n  - name: x\n    hook: forward\n    match: {uid: 0}\n    action: accept\n",
			"p.yaml:5:18", "forwarded packets have no local socket, so the rule can never match"},
		{"forward only cgroup", head + "rules:\n  - name: x\n    hook: forward\n    match: {cgroup: system.slice}\n    action: accept\n",
			"p.yaml:5:21", "can never match"},
		{"oif and iif leave forward", head + "rules:\n  - name: x\n    match: {iif: eth0, oif: eth1, gid: 0}\n    action: accept\n",
			"p.yaml:4:40", "can never match"},
		{"range backwards", head + "rules:\n  - name: x\n    match: {uid: 2000-1000}\n    action: accept\n",
			"p.yaml:4:18", "start is above end"},
		{"too big", head + "rules:\n  - name: x\n    match: {uid: 4294967296}\n    action: accept\n",
			"p.yaml:4:18", "out of range"},
		{"bad name", head + "rules:\n  - name: x\n    match: {uid: \"a b\"}\n    action: accept\n",
			"p.yaml:4:18", "uid must be a number"},
		{"cgroup root", head + "rules:\n  - name: x\n    match: {cgroup: /}\n    action: accept\n",
			"p.yaml:4:21", "root cgroup"},
		{"cgroup dotdot", head + "rules:\n  - name: x\n    match: {cgroup: a/../b}\n    action: accept\n",
			"p.yaml:4:21", "not a clean path"},
		{"cgroup negated", head + "rules:\n  - name: x\n    match: {cgroup: \"!a\"}\n    action: accept\n",
			"p.yaml:4:21", "negation"},
		{"test forward uid", head + "tests:\n  - packet: {hook: forward, uid: 0}\n    expect: drop\n",
			"p.yaml:3:13", "forwarded test packet has no local socket"},
		{"test unknown user", head + "tests:\n  - packet: {hook: output, uid: mallory}\n    expect: accept\n",
			"p.yaml:3:33", `unknown user "mallory"`},
		{"test cgroup pattern", head + "tests:\n  - packet: {hook: output, cgroup: \"a/*\"}\n    expect: accept\n",
			"p.yaml:3:36", "must be a path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadNames(t, tc.policy)
			if err == nil {
				t.Fatalf("loaded; want %s: %s", tc.at, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), tc.at+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %q, want %s: ...%s...", err, tc.at, tc.msg)
			}
		})
	}
}

func TestOwnerLoad(t *testing.T) {
	pol, err := loadNames(t, head+`sets:
  web: [www-data]
  staff: [1000-1999]
rules:
  - name: a
    match: {uid: [$web, $staff, "!1500", svc]}
    action: accept
  - name: b
    hook: [input, forward, output]
    match: {gid: "!users", cgroup: [/system.slice/nginx.service/, "user.slice/*"]}
    action: drop
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b := pol.Rules[0], pol.Rules[1]
	want := policies.IDMatch{Set: true, HasPos: true, Pos: []policies.IDRange{{33, 33}, {1000, 1999}, {100000, 100000}}, Neg: []policies.IDRange{{1500, 1500}}}
	if fmt.Sprint(a.Match.UID) != fmt.Sprint(want) {
		t.Errorf("uid = %+v, want %+v", a.Match.UID, want)
	}
	const ownerHooks = 1<<nf.HookInput | 1<<nf.HookOutput
	if a.Hooks != ownerHooks || b.Hooks != ownerHooks {
		t.Errorf("hooks %b and %b, want input and output only (%b)", a.Hooks, b.Hooks, ownerHooks)
	}
	if got := strings.Join(b.Match.Cgroup, " "); got != "system.slice/nginx.service user.slice/*" {
		t.Errorf("cgroup patterns %q", got)
	}
	// b named forward itself: one warning says it was dropped from the hooks.
	if len(pol.Warnings) != 1 || !strings.Contains(pol.Warnings[0], "applies to input, output only") {
		t.Errorf("warnings %q, want one about rule b's forward hook", pol.Warnings)
	}
	if len(pol.EvalWarnings) != 3 || !strings.Contains(pol.EvalWarnings[0], "p.yaml:7:13: warning: rule \"a\" matches uid, but captures carry no socket owner") {
		t.Errorf("eval warnings %q", pol.EvalWarnings)
	}
}

// TestOwnerHostNames resolves against the real user database: root is uid 0
// and group 0 everywhere this agent runs.
func TestOwnerHostNames(t *testing.T) {
	pol, err := load(head + "rules:\n  - name: a\n    match: {uid: root, gid: root}\n    action: accept\n")
	if err != nil {
		t.Fatal(err)
	}
	if m := pol.Rules[0].Match; !m.UID.Matches(0) || m.UID.Matches(1) || !m.GID.Matches(0) {
		t.Errorf("root resolved to %+v / %+v", m.UID, m.GID)
	}
	_, err = load(head + "rules:\n  - name: a\n    match: {uid: no-such-user-fwagent}\n    action: accept\n")
	if err == nil || !strings.HasPrefix(err.Error(), "p.yaml:4:18: unknown user") {
		t.Errorf("unknown host user: %v", err)
	}
}

type cgroupOf map[string]string // by destination address

func (c cgroupOf) Cgroup(p *packet.Packet, _ nf.Hook) (string, bool) {
	s, ok := c[p.Dst.String()]
	return s, ok
}

func TestOwnerDecide(t *testing.T) {
	prog := compileNames(t, head+`default: {input: drop, output: drop}
rules:
  - name: root-8080
    hook: output
    match: {proto: tcp, dport: 8080, uid: root}
    action: accept
  - name: not-alice
    hook: output
    match: {proto: tcp, dport: 9000, uid: "!alice"}
    action: accept
  - name: group
    match: {proto: udp, gid: [users, 33]}
    action: accept
  - name: web
    match: {proto: tcp, dport: 443, cgroup: system.slice/nginx.service}
    action: accept
  - name: browsers
    hook: output
    match: {proto: tcp, dport: 80, cgroup: "user.slice/user-*.slice/*/app-firefox*"}
    action: accept
`)
	out := func(dport uint16, dst string) *policies.Input {
		return &policies.Input{Pkt: pk(packet.ProtoTCP, "10.0.0.1", dst, 40000, dport), Hook: nf.HookOutput}
	}
	withUID := func(in *policies.Input, uid uint32) *policies.Input { in.HasUID, in.UID = true, uid; return in }
	finder := cgroupOf{
		"10.0.0.2": "system.slice/nginx.service",
		"10.0.0.3": "system.slice/nginx.service/worker",
		"10.0.0.4": "system.slice/nginx.service2",
		"10.0.0.5": "user.slice/user-1000.slice/user@1000.service/app-firefox-1.scope",
		"10.0.0.6": "user.slice/user-1000.slice/user@1000.service",
	}
	withCg := func(in *policies.Input) *policies.Input { in.Cgroups = finder; return in }
	cases := []struct {
		name string
		in   *policies.Input
		rule string
	}{
		{"root", withUID(out(8080, "10.0.0.9"), 0), "root-8080"},
		{"nobody", withUID(out(8080, "10.0.0.9"), 65534), "default"},
		{"ownerless", out(8080, "10.0.0.9"), "default"},
		{"negation other", withUID(out(9000, "10.0.0.9"), 0), "not-alice"},
		{"negation alice", withUID(out(9000, "10.0.0.9"), 1000), "default"},
		{"negation ownerless", out(9000, "10.0.0.9"), "default"},
		{"gid", &policies.Input{Pkt: pk(packet.ProtoUDP, "10.0.0.1", "10.0.0.9", 1, 2), Hook: nf.HookInput, HasGID: true, GID: 33}, "group"},
		{"gid other", &policies.Input{Pkt: pk(packet.ProtoUDP, "10.0.0.1", "10.0.0.9", 1, 2), Hook: nf.HookInput, HasGID: true, GID: 34}, "default"},
		{"cgroup", withCg(out(443, "10.0.0.2")), "web"},
		{"cgroup child", withCg(out(443, "10.0.0.3")), "web"},
		{"cgroup prefix is not a parent", withCg(out(443, "10.0.0.4")), "default"},
		{"cgroup unknown", withCg(out(443, "10.0.0.99")), "default"},
		{"no finder", out(443, "10.0.0.2"), "default"},
		{"cgroup glob", withCg(out(80, "10.0.0.5")), "browsers"},
		{"cgroup glob too short", withCg(out(80, "10.0.0.6")), "default"},
	}
	for _, tc := range cases {
		d := prog.Decide(tc.in)
		if got := prog.RuleName(d.Rule); got != tc.rule {
			t.Errorf("%s: decided by %s, want %s", tc.name, got, tc.rule)
		}
	}
	// No forwarded packet matches, whatever owner it claims.
	in := withUID(out(8080, "10.0.0.9"), 0)
	in.Hook = nf.HookForward
	if d := prog.Decide(in); d.Rule != policies.NoRule {
		t.Errorf("forwarded packet decided by %s", prog.RuleName(d.Rule))
	}
}

// TestOwnerCacheable: a packet without an owner may belong to a flow whose
// later packets have one, so skipping an owner rule for it must not make
// the default's decision cacheable; an owner that does not match is the
// flow's for good.
func TestOwnerCacheable(t *testing.T) {
	prog := compileNames(t, head+`default: {input: accept}
rules:
  - name: r
    hook: input
    match: {proto: tcp, dport: 22, uid: "!0"}
    action: drop
`)
	in := &policies.Input{Pkt: pk(packet.ProtoTCP, "10.0.0.1", "10.0.0.2", 40000, 22), Hook: nf.HookInput}
	if d := prog.Decide(in); d.Rule != policies.NoRule || d.Cacheable || d.Offload {
		t.Errorf("ownerless: %+v, want the default, neither cacheable nor offloaded", d)
	}
	in.HasUID, in.UID = true, 0
	if d := prog.Decide(in); d.Rule != policies.NoRule || !d.Cacheable || !d.Offload {
		t.Errorf("owner 0: %+v, want the default, cacheable and offloaded", d)
	}
	in.UID = 7
	if d := prog.Decide(in); d.Rule != 0 || !d.Cacheable {
		t.Errorf("owner 7: %+v, want rule r, cacheable", d)
	}
}

// countingFinder counts lookups: Decide asks at most once per packet.
type countingFinder struct{ n int }

func (c *countingFinder) Cgroup(*packet.Packet, nf.Hook) (string, bool) {
	c.n++
	return "a/b", true
}

func TestOwnerCgroupAskedOnce(t *testing.T) {
	prog := compileNames(t, head+`default: {output: drop}
rules:
  - {name: one, hook: output, match: {cgroup: x}, action: accept}
  - {name: two, hook: output, match: {cgroup: y}, action: accept}
  - {name: three, hook: output, match: {cgroup: a}, action: accept}
`)
	if !prog.UsesCgroup() {
		t.Error("UsesCgroup false")
	}
	f := &countingFinder{}
	in := &policies.Input{Pkt: pk(packet.ProtoTCP, "10.0.0.1", "10.0.0.2", 1, 2), Hook: nf.HookOutput, Cgroups: f}
	for range 3 {
		if d := prog.Decide(in); prog.RuleName(d.Rule) != "three" {
			t.Fatalf("decided by %s", prog.RuleName(d.Rule))
		}
	}
	if f.n != 3 {
		t.Errorf("%d lookups for 3 packets, want 3", f.n)
	}
}

func TestCgroupMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"a", "a", true},
		{"a", "a/b", true},
		{"a", "ab", false},
		{"a", "", false},
		{"a/b", "a", false},
		{"a/*", "a/x", true},
		{"a/*", "a", false},
		{"*.service", "nginx.service", true},
		{"*.service", "nginx.service/x", true},
		{"*.service", "nginx.scope", false},
		{"system.slice/*.service", "system.slice/nginx.service", true},
		{"system.slice/*.service", "user.slice/nginx.service", false},
	} {
		if got := policies.CgroupMatch(tc.pattern, tc.path); got != tc.want {
			t.Errorf("CgroupMatch(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

func TestOwnerPolicyTests(t *testing.T) {
	prog := compileNames(t, head+`default: {output: drop}
rules:
  - {name: web, hook: output, match: {proto: tcp, dport: 443, uid: www-data}, action: accept}
  - {name: svc, hook: output, match: {proto: tcp, dport: 80, cgroup: system.slice/apt*}, action: accept}
tests:
  - packet: {hook: output, proto: tcp, dport: 443, uid: www-data}
    expect: accept
  - packet: {hook: output, proto: tcp, dport: 443, uid: 33}
    expect: accept
  - packet: {hook: output, proto: tcp, dport: 443}
    expect: drop
  - packet: {hook: output, proto: tcp, dport: 80, cgroup: /system.slice/apt-daily.service}
    expect: accept
    rule: svc
  - packet: {hook: output, proto: tcp, dport: 80, cgroup: user.slice}
    expect: drop
`)
	for _, r := range policytest.Run(prog) {
		if !r.OK {
			t.Error(r)
		}
	}
}

func TestOwnerShadow(t *testing.T) {
	pol, err := loadNames(t, head+`rules:
  - {name: a, hook: output, match: {proto: tcp, uid: 0}, action: accept}
  - {name: b, hook: output, match: {proto: tcp, uid: 1}, action: accept}
  - {name: c, hook: output, match: {proto: tcp, uid: 0, dport: 22}, action: accept}
  - {name: d, hook: output, match: {proto: tcp}, action: accept}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Warnings) != 1 || !strings.Contains(pol.Warnings[0], `rule "c" is shadowed by rule "a"`) {
		t.Errorf("warnings %q, want only c shadowed by a", pol.Warnings)
	}
}

// The property test's owner parts (decide_test.go).

func randomOwnerField(rng *rand.Rand) string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	switch rng.IntN(3) {
	case 0:
		return "uid: " + pick("0", "1000", `"!0"`, "[0, 1000-1999]", `["!1500", "1000-2000"]`)
	case 1:
		return "gid: " + pick("0", "100", `"!100"`)
	}
	return "cgroup: " + pick("a", "a/b", `"a/*"`, "[b, a/b/c]")
}

func randomOwner(rng *rand.Rand, in *policies.Input) {
	if rng.IntN(3) > 0 {
		in.HasUID, in.UID = true, []uint32{0, 1000, 1500, 1999, 65534}[rng.IntN(5)]
	}
	if rng.IntN(3) > 0 {
		in.HasGID, in.GID = true, []uint32{0, 100, 101}[rng.IntN(3)]
	}
	if rng.IntN(3) > 0 {
		in.Cgroups = policytest.FixedCgroup([]string{"", "a", "a/b", "a/b/c", "b", "a/x"}[rng.IntN(6)])
	}
}

func naiveOwner(m *policies.Match, in *policies.Input) bool {
	if m.UID.Set && (!in.HasUID || !m.UID.Matches(in.UID)) {
		return false
	}
	if m.GID.Set && (!in.HasGID || !m.GID.Matches(in.GID)) {
		return false
	}
	if len(m.Cgroup) == 0 {
		return true
	}
	if in.Cgroups == nil {
		return false
	}
	cg, ok := in.Cgroups.Cgroup(in.Pkt, in.Hook)
	if !ok {
		return false
	}
	for _, p := range m.Cgroup {
		// The spec: the cgroup's path, component by component, starts
		// with the pattern's components.
		pc, cc := strings.Split(p, "/"), strings.Split(cg, "/")
		if cg == "" || len(cc) < len(pc) {
			continue
		}
		ok := true
		for i := range pc {
			ok = ok && policies.GlobMatch(pc[i], cc[i])
		}
		if ok {
			return true
		}
	}
	return false
}
