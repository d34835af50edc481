package rules

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/testing/policygen"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

// compileText loads, compiles and plans a policy for cfg.
func compileText(t testing.TB, cfg Config, text string) *Plan {
	t.Helper()
	pol, err := policyload.Load("test.yaml", []byte(text), nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	prog, err := policies.Compile(pol)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	plan, err := Compile(prog, cfg)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return plan
}

// everyField uses every field the compiler knows, negations, sets of both
// families, and the fields it must queue.
const everyField = `version: 1
default: {input: drop, forward: drop, output: accept, log: true}
sets:
  nets: [10.0.0.0/8, 192.168.1.0/24, 192.168.2.0/24, "2001:db8::/32", "fd00::/8"]
  ports: [22, 80, 8000-8099]
  names: [a.example]
rules:
  - {name: est, match: {state: [established, related]}, action: accept}
  - {name: inv, match: {state: invalid}, action: drop, log: true}
  - {name: bogon, match: {src: ["!$nets", "!127.0.0.0/8"], family: ipv4}, action: drop}
  - {name: web, match: {proto: [tcp, udp], dst: $nets, dport: [$ports, "!8050-8060", 443]}, action: accept, log: true}
  - {name: ssh6, match: {proto: tcp, src: "2001:db8:1::/48", sport: "!0-1023", tcp_flags: S/SA}, action: reject}
  - {name: ping, match: {icmp_type: [echo-request, 128]}, action: accept, mark: 0x42}
  - {name: big, match: {length: [1000-1500, 9000]}, action: drop}
  - {name: eth, hook: input, match: {iif: [eth0, "veth*"]}, action: reject, log: {prefix: eth-in}}
  - {name: glob, hook: input, match: {iif: "*th*"}, action: drop}
  - {name: sni, match: {proto: tcp, dport: 443, tls_sni: $names}, action: reject}
  - {name: lim, match: {proto: udp}, limit: {rate: 10/s}, action: accept}
  - {name: audit, match: {proto: sctp}, action: drop, audit: true}
  - {name: newssh, match: {proto: tcp, dport: 22, state: new}, action: accept}
  - {name: rootweb, hook: output, match: {uid: 0, proto: tcp, dport: 8080}, action: accept}
  - {name: users, hook: output, match: {uid: [1000-1999, 3000], gid: "!0"}, action: drop, log: true}
  - {name: notnobody, match: {uid: "!65534", gid: [0-10, "!5"]}, action: accept}
`

func TestCompileWhy(t *testing.T) {
	cfg := DefaultConfig()
	plan := compileText(t, cfg, everyField)
	prog := plan.Program()
	want := map[string]string{
		"glob": "iif pattern", "sni": "tls_sni needs userspace", "lim": "limit needs userspace",
		"notnobody": "uid/gid on input needs userspace",
	}
	kernel := 0
	for i := 0; i < prog.NumRules(); i++ {
		name := prog.RuleName(int32(i))
		why := plan.Why(i)
		if w, ok := want[name]; ok {
			if !strings.Contains(why, w) {
				t.Errorf("rule %s: why %q, want it to say %q", name, why, w)
			}
			continue
		}
		if why != "" {
			t.Errorf("rule %s: why %q, want it in the kernel", name, why)
		}
		kernel++
	}
	if plan.Kernel() != kernel {
		t.Errorf("Kernel() = %d, want %d", plan.Kernel(), kernel)
	}
}

// TestCompiledRenderLoadsLikeInstall loads the rendered text with nft and
// installs the same plan over netlink, in two namespaces, and compares the
// kernel's listings: the text and the expressions describe one table.
func TestCompiledRenderLoadsLikeInstall(t *testing.T) {
	t.Run("every field", func(t *testing.T) { renderLoadsLikeInstall(t, everyField, 0) })
	// Guarded blocks: generated rules all have an address or port.
	t.Run("blocks", func(t *testing.T) {
		renderLoadsLikeInstall(t, policygen.Generate(policygen.Options{Rules: 40}), 4)
	})
	t.Run("index", func(t *testing.T) {
		renderLoadsLikeInstall(t, policygen.Generate(policygen.Options{Rules: 100}), 0)
	})
	// An index in segments, as a chain of more rules than the scratch bits
	// hold positions for gets (TestLongChainIndexInSegments); segments of
	// 30 rules, since nft -f of a table with that many rules takes minutes.
	t.Run("index in segments", func(t *testing.T) {
		renderLoadsLikeInstall(t, policygen.Generate(policygen.Options{Rules: 100}), 0, func(cfg *Config) { cfg.Plan.indexSegment = 30 })
	})
	// A set whose elements overflow one netlink message (sets.go).
	t.Run("large set", func(t *testing.T) { renderLoadsLikeInstall(t, largeSetPolicy(5000), 0) })
	// --kernel-rules off: queue, with the plan for what cannot be queued.
	t.Run("queue all", func(t *testing.T) { renderLoadsLikeInstall(t, everyField, 0, queueAll) })
}

// queueAll makes a test's configuration that of --kernel-rules off.
func queueAll(cfg *Config) { cfg.QueueAll = true }

// largeSetPolicy drops traffic from a set of n addresses, every other one
// of 10.0.0.0/8, so that nft merges none of them into a range.
func largeSetPolicy(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\ndefault: {input: accept, forward: accept, output: accept}\nsets:\n  blocked:\n")
	for i := range n {
		v := 2 * (i + 1)
		fmt.Fprintf(&b, "    - 10.%d.%d.%d\n", v>>16&0xff, v>>8&0xff, v&0xff)
	}
	b.WriteString("rules:\n  - {name: blocked, match: {src: $blocked}, action: drop}\n")
	return b.String()
}

func renderLoadsLikeInstall(t *testing.T, policy string, blockSize int, opts ...func(*Config)) {
	cfg := testConfig(t)
	cfg.Plan = compileText(t, cfg, policy)
	for _, o := range opts {
		o(&cfg)
	}
	cfg.Plan.blockSize = blockSize
	if blockSize > 0 {
		cfg.Plan.indexMin = -1
	}
	if blockSize > 0 && len(cfg.Plan.layout(nf.HookInput, queueStmt{}, "x").blocks) == 0 {
		t.Fatal("the policy makes no guarded block")
	}
	text := Render(cfg)
	loaded := newTestNS(t)
	if out, err := loaded.run(t, text, "nft", "-f", "-"); err != nil {
		t.Fatalf("nft -f of Render: %v\n%s\n%s", err, out, text)
	}
	installed := newTestNS(t)
	tb, err := Install(installed.conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Verify(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range loaded.listing(t, "inet", TableName) {
		got = append(got, sameBytes(l))
	}
	var want []string
	for _, l := range installed.listing(t, "inet", TableName) {
		if strings.HasSuffix(l, `comment "queue"`) || strings.Contains(l, `comment "queue:`) {
			continue // xt queue rules: Render writes them as comments
		}
		want = append(want, sameBytes(l))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("nft -f of Render:\n%s\n\nInstall:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Reload in place, twice (the policy chain's two names alternate): the
	// base chains stay, only the jump and the offload rules are new.
	for gen := uint32(9); gen < 11; gen++ {
		before := tb.Handles(nf.HookInput)
		next := compileText(t, cfg, policy)
		next.blockSize, next.indexMin, next.indexSegment = blockSize, cfg.Plan.indexMin, cfg.Plan.indexSegment
		if err := tb.SetPlan(next, gen); err != nil {
			t.Fatal(err)
		}
		if err := tb.Verify(); err != nil {
			t.Fatal(err)
		}
		after := tb.Handles(nf.HookInput)
		for name, h := range before {
			switch name {
			case RulePolicy, RuleOffload, RuleOffloadReply, RuleOffloadStale, RuleOffloadSet, RuleOffloadSetRep:
				if after[name] == h {
					t.Errorf("reload kept the old %s rule", name)
				}
			default:
				if after[name] != h {
					t.Errorf("reload replaced base rule %s: handle %d -> %d", name, h, after[name])
				}
			}
		}
	}
}

// sameBytes rewrites the parts of a listing line where nft prints the same
// bytes differently for a table loaded from text and one installed over
// netlink: google/nftables v0.3.0 sends anonymous sets without nft's key
// description (typeof), so nft prints each key by its datatype alone. The
// keys of the index pick map, keyed by the host-order mark, it prints
// big-endian: they are dropped, leaving the targets. The first byte of the
// network header in the family-and-protocol lookup (an nfproto for
// netlink, where nft has no 8-bit integer type, hex from text) becomes
// decimal. The differential tests check what the maps do.
func sameBytes(l string) string {
	if strings.HasSuffix(l, `comment "`+RuleFamilyProto+`"`) {
		return hexKey.ReplaceAllStringFunc(l, func(h string) string {
			v, _ := strconv.ParseUint(strings.TrimSuffix(h, " ."), 0, 8)
			return strconv.FormatUint(v, 10) + " ."
		})
	}
	return pickKeys(l)
}

var hexKey = regexp.MustCompile(`0x[0-9a-f]{2} \.`)

// pickKeys drops the keys of the index pick map from a listing line.
func pickKeys(l string) string {
	if !strings.HasSuffix(l, `comment "`+RuleIndexPick+`"`) {
		return l
	}
	var targets []string
	fs := strings.Fields(l)
	for i, f := range fs {
		if f == "goto" && i+1 < len(fs) {
			targets = append(targets, strings.TrimSuffix(fs[i+1], ","))
		}
	}
	slices.Sort(targets)
	return "index pick to " + strings.Join(targets, " ")
}

// TestRuleHitsSurviveReload: kernel hits are counted in named objects that
// a reload keeps, so a rule's count never goes back.
func TestRuleHitsSurviveReload(t *testing.T) {
	ns := newTestNS(t)
	cfg := testConfig(t)
	cfg.Hooks = []nf.Hook{nf.HookOutput}
	pol := "version: 1\nrules:\n  - {name: lo-out, match: {proto: udp, dport: 9999}, action: accept}\n"
	cfg.AcceptLoopback = false
	cfg.Plan = compileText(t, cfg, pol)
	tb, err := Install(ns.conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns.mustRun(t, "", "ip", "link", "set", "lo", "up")
	send := func() {
		ns.mustRun(t, "", "bash", "-c", "echo x > /dev/udp/127.0.0.1/9999")
	}
	send()
	send()
	hits := func() uint64 {
		h, err := tb.RuleHits()
		if err != nil {
			t.Fatal(err)
		}
		return h["lo-out"]
	}
	if got := hits(); got != 2 {
		t.Fatalf("hits %d, want 2", got)
	}
	if err := tb.SetPlan(compileText(t, cfg, pol+"  - {name: other, match: {proto: tcp}, action: drop}\n"), 8); err != nil {
		t.Fatal(err)
	}
	send()
	if got := hits(); got != 3 {
		t.Fatalf("hits after reload %d, want 3", got)
	}
}

// TestLargePolicyInstallsAndReloads: a 1,000-rule policy is one batch of
// megabytes, installed and reloaded in place.
func TestLargePolicyInstallsAndReloads(t *testing.T) {
	ns := newTestNS(t)
	cfg := testConfig(t)
	cfg.Hooks = []nf.Hook{nf.HookInput}
	text := policygen.Generate(policygen.Options{Rules: 1000, Stateful: true})
	cfg.Plan = compileText(t, cfg, text)
	if k := cfg.Plan.Kernel(); k != 1000 {
		t.Errorf("%d of 1000 generated L3/L4 rules in the kernel, want all", k)
	}
	tb, err := Install(ns.conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.SetPlan(compileText(t, cfg, text), 4); err != nil {
		t.Fatal(err)
	}
	if err := tb.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestLongChainIndexInSegments: a chain of more rules than the scratch
// bits hold positions for is still an index, in segments (index.go), not
// the guarded blocks it fell back to before.
func TestLongChainIndexInSegments(t *testing.T) {
	cfg := testConfig(t)
	plan := compileText(t, cfg, policygen.Generate(policygen.Options{Rules: 2500}))
	if most := indexSegments(plan.layout(nf.HookInput, queueStmt{}, "x")); most < 2 {
		t.Fatalf("the longest chain has %d index segments, want at least 2 (%d positions a segment)", most, newPosField(plan.marks.ScratchMask()).max())
	}
}
