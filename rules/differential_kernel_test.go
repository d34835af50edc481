package rules

import (
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/checksum"
	"github.com/fwagent/fwagent/internal/testing/testnet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

// The differential test runs each generated packet through the compiled
// table in a namespace and through the userspace engine, and fails on any
// difference (DESIGN.md, "Kernel fast path"): the kernel must stop at the
// rule userspace says, decide there exactly when userspace decides by that
// rule, and queue only packets whose first kernel-part match is a rule that
// needs userspace.
var (
	diffPolicies = flag.Int("diff.policies", 12, "differential test: policies to generate")
	diffPackets  = flag.Int("diff.packets", 30, "differential test: packets per policy")
	diffSeed     = flag.Uint64("diff.seed", 0, "differential test: seed (0: from the clock, printed)")
)

// Local destinations on the server: any address in these is delivered to
// its input hook (ip route add local ...), so policies can name many.
var (
	localNet4 = netip.MustParsePrefix("198.51.100.0/24")
	localNet6 = netip.MustParsePrefix("2001:db8:100::/64")
)

// diffBed is the namespace pair: frames are written onto the client's veth
// with an AF_PACKET socket, so the server's kernel sees exactly the bytes
// the userspace engine decodes.
type diffBed struct {
	net      *testnet.Net
	link     *testnet.RawLink
	conn     *nftables.Conn
	serverIf string
	// hook is where the bed tests the policy: input (frames written onto
	// the client's veth) or output (raw IP sockets in the server, whose
	// packets leave by its veth).
	hook       nf.Hook
	raw4, raw6 int
	table      *Table
	obs        *nftables.Chain
}

func newDiffBed(t *testing.T, hook nf.Hook) *diffBed {
	t.Helper()
	requireKernel(t, "nft", "conntrack", "ip")
	n := testnet.New(t, testnet.WithPrefix("fwdiff"))
	srv := n.Server
	b := &diffBed{net: n, serverIf: srv.Ifaces()[0].Name, hook: hook}
	for _, k := range []string{"net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter", "net/ipv4/conf/" + b.serverIf + "/rp_filter"} {
		if err := srv.WriteSysctl(k, "0"); err != nil {
			t.Fatalf("sysctl %s: %v", k, err)
		}
	}
	// docs/policy.md's invalid: with loose pickup a mid-stream ACK with no
	// flow is new, a stray FIN or RST invalid. Set, not assumed.
	if err := srv.WriteSysctl("net/netfilter/nf_conntrack_tcp_loose", "1"); err != nil {
		t.Fatalf("sysctl tcp_loose: %v", err)
	}
	// Mid-stream TCP packets of entries made with conntrack -I carry
	// whatever sequence numbers the generator chose.
	if err := srv.WriteSysctl("net/netfilter/nf_conntrack_tcp_be_liberal", "1"); err != nil {
		t.Logf("sysctl tcp_be_liberal: %v", err)
	}
	routes := [][]string{
		{"route", "add", "local", localNet4.String(), "dev", "lo"},
		{"-6", "route", "add", "local", localNet6.String(), "dev", "lo"},
	}
	if hook == nf.HookOutput {
		// Every generated destination leaves by the veth, to a
		// permanent neighbour no one has: nothing answers, and no failed
		// resolution makes the kernel send errors through the hook.
		routes = [][]string{
			{"neigh", "add", "10.255.255.1", "lladdr", "02:00:00:00:00:01", "dev", b.serverIf, "nud", "permanent"},
			{"route", "add", "default", "via", "10.255.255.1", "dev", b.serverIf, "onlink"},
			{"-6", "neigh", "add", "fe80::ff:1", "lladdr", "02:00:00:00:00:01", "dev", b.serverIf, "nud", "permanent"},
			{"-6", "route", "add", "default", "via", "fe80::ff:1", "dev", b.serverIf},
		}
		b.openRaw(t)
	}
	for _, args := range routes {
		if out, err := srv.Command(t.Context(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	b.link = n.Client.OpenRawLink(t, n.Client.Ifaces()[0].Name, srv, b.serverIf)
	c, err := nftables.New(nftables.WithNetNSFd(int(srv.Handle())), BigBatches())
	if err != nil {
		t.Fatal(err)
	}
	b.conn = c
	// The observer runs before the agent's chain and counts each packet by
	// the kernel's conntrack state: the state userspace is told.
	obsT := &nftables.Table{Name: "fwdiffobs", Family: nftables.TableFamilyINet}
	c.AddTable(obsT)
	prio := nftables.ChainPriorityRef(-10)
	obsHook := nftables.ChainHookInput
	if hook == nf.HookOutput {
		obsHook = nftables.ChainHookOutput
	}
	b.obs = c.AddChain(&nftables.Chain{Name: "in", Table: obsT, Type: nftables.ChainTypeFilter, Hooknum: obsHook, Priority: prio})
	for _, st := range []struct {
		bit  uint32
		name string
	}{{expr.CtStateBitNEW, "new"}, {expr.CtStateBitESTABLISHED, "established"}, {expr.CtStateBitRELATED, "related"}, {expr.CtStateBitINVALID, "invalid"}, {expr.CtStateBitUNTRACKED, "untracked"}} {
		r := rule{name: st.name, stmts: []stmt{ctState{bit: st.bit, name: st.name}, counterStmt{}}}
		c.AddRule(r.nft(obsT, b.obs))
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("observer table: %v", err)
	}
	b.settle(t)
	return b
}

// settle waits until the hook has seen no packet for a while: a new
// interface sends IPv6 duplicate address detection and MLD reports for a
// second or two, and one that passes while a generated packet is observed
// moves a second counter.
func (b *diffBed) settle(t *testing.T) {
	t.Helper()
	obsT := &nftables.Table{Name: "fwdiffobs", Family: nftables.TableFamilyINet}
	total := func() uint64 {
		_, vals, err := counters(b.conn, obsT, "in")
		if err != nil {
			t.Fatalf("observer counters: %v", err)
		}
		var n uint64
		for _, v := range vals {
			n += v
		}
		return n
	}
	const quiet, limit = 1500 * time.Millisecond, 10 * time.Second
	last, since, start := total(), time.Now(), time.Now()
	for time.Since(since) < quiet {
		if time.Since(start) > limit {
			t.Logf("the hook still sees packets after %v; going on", limit)
			return
		}
		time.Sleep(100 * time.Millisecond)
		if n := total(); n != last {
			last, since = n, time.Now()
		}
	}
}

// counters reads a chain's counters by position, with each rule's comment.
func counters(c *nftables.Conn, t *nftables.Table, ch string) ([]string, []uint64, error) {
	rs, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(rs))
	vals := make([]uint64, len(rs))
	for i, r := range rs {
		names[i], _ = userdata.GetString(r.UserData, userdata.TypeComment)
		for _, e := range r.Exprs {
			if ct, ok := e.(*expr.Counter); ok {
				vals[i] = ct.Packets
			}
		}
	}
	return names, vals, nil
}

// snapshot is the policy chain's counts by outcome: "queue:NAME" from the
// queue rules' counters, "rule:NAME" and "default" from the hit counter
// objects of the plan in force.
func (b *diffBed) snapshot() (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, ch := range b.table.policyChainsOf(b.hook) {
		names, vals, err := counters(b.conn, ownTable(), ch)
		if err != nil {
			return nil, err
		}
		for i, n := range names {
			if strings.HasPrefix(n, commentQueue) {
				out[n] += vals[i]
			}
		}
	}
	hits, err := b.table.RuleHits()
	if err != nil {
		return nil, err
	}
	for rule, v := range hits {
		if rule == commentDefault {
			out[commentDefault] = v
		} else {
			out[commentRule+rule] = v
		}
	}
	return out, nil
}

// diffPacket is one generated packet and how to prepare the kernel's
// conntrack for it.
type diffPacket struct {
	bytes []byte
	// frags, when set, are sent instead of bytes: bytes in IPv4
	// fragments, which the kernel reassembles into bytes before the
	// agent's chain (or a queue) sees them.
	frags [][]byte
	// conntrack is `conntrack -I` arguments run before sending, nil for none.
	conntrack []string
	note      string
}

func (p diffPacket) String() string {
	s := fmt.Sprintf("packet %s (%s)", hex.EncodeToString(p.bytes), p.note)
	if p.conntrack != nil {
		s += "\n  after: conntrack -I " + strings.Join(p.conntrack, " ")
	}
	return s
}

// observe reads the observer chain's state counters and the policy
// chain's rule counters.
func (b *diffBed) observe() (obs []uint64, pol map[string]uint64, err error) {
	obsT := &nftables.Table{Name: "fwdiffobs", Family: nftables.TableFamilyINet}
	if _, obs, err = counters(b.conn, obsT, "in"); err != nil {
		return nil, nil, err
	}
	pol, err = b.snapshot()
	return obs, pol, err
}

// kernelOutcome is the comment of the policy-chain rule whose counter the
// packet moved, and the state the observer saw.
func (b *diffBed) send(t *testing.T, p diffPacket) (string, nf.State, error) {
	t.Helper()
	if p.conntrack != nil {
		// An earlier packet of the same policy may have made an entry for
		// this flow, either way round (a generator's tuples can repeat);
		// -I refuses to replace it, so it goes first. -D exits 1 when it
		// deletes nothing, which is the usual case.
		for _, del := range conntrackDeletes(p.conntrack) {
			_ = b.net.Server.Command(t.Context(), "conntrack", del...).Run()
		}
		args := append([]string{"-I"}, p.conntrack...)
		if out, err := b.net.Server.Command(t.Context(), "conntrack", args...).CombinedOutput(); err != nil {
			return "", 0, fmt.Errorf("conntrack %v: %v: %s", args, err, out)
		}
	}
	obs0, pol0, err := b.observe()
	if err != nil {
		return "", 0, err
	}
	et := uint16(0x0800)
	if p.bytes[0]>>4 == 6 {
		et = 0x86dd
	}
	frames := p.frags
	if frames == nil {
		frames = [][]byte{p.bytes}
	}
	if b.hook == nf.HookOutput {
		// EPERM: a drop or reject in the hook, what the counters tell.
		if err := b.sendRaw(p.bytes); err != nil && err != unix.EPERM {
			return "", 0, err
		}
		frames = nil
	}
	for _, f := range frames {
		if err := b.link.Send(et, f); err != nil {
			return "", 0, err
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		obs1, pol1, err := b.observe()
		if err != nil {
			return "", 0, err
		}
		st, seen := nf.StateNew, false
		for i, name := range []string{"new", "established", "related", "invalid", "untracked"} {
			if obs1[i] != obs0[i] {
				seen = true
				switch name {
				case "established":
					st = nf.StateEstablished
				case "related":
					st = nf.StateRelated
				case "invalid":
					st = nf.StateInvalid
				}
			}
		}
		var moved []string
		for k, v := range pol1 {
			if v != pol0[k] {
				moved = append(moved, fmt.Sprintf("%s+%d", k, v-pol0[k]))
			}
		}
		if len(moved) > 1 {
			slices.Sort(moved)
			return "", 0, fmt.Errorf("one packet moved several counters (a packet the test did not send?): %v", moved)
		}
		for k, v := range pol1 {
			if v != pol0[k] {
				return k, st, nil
			}
		}
		if time.Now().After(deadline) {
			if seen {
				return "(no policy rule: decided before the policy chain)", st, nil
			}
			return "", 0, fmt.Errorf("the packet never reached the input hook")
		}
		time.Sleep(time.Millisecond)
	}
}

// expected is what the userspace engine says the kernel chain must do with
// the packet, and any internal inconsistency of the plan's model.
func expected(plan *Plan, in *policies.Input) (string, error) {
	prog := plan.Program()
	if plan.Guarded(in) {
		return commentQueue + guardMalformed, nil
	}
	d := prog.Decide(in)
	first := plan.FirstKernelMatch(in)
	if plan.Path(in) == "queue" {
		if d.Rule != policies.NoRule && d.Rule < first {
			return "", fmt.Errorf("userspace decides by rule %s before the first kernel match %s", prog.RuleName(d.Rule), prog.RuleName(first))
		}
		return commentQueue + prog.RuleName(first), nil
	}
	if first != d.Rule {
		return "", fmt.Errorf("kernel path: first kernel match %s but userspace decides by %s", prog.RuleName(first), prog.RuleName(d.Rule))
	}
	if d.Rule == policies.NoRule {
		return commentDefault, nil
	}
	return commentRule + prog.RuleName(d.Rule), nil
}

func TestDifferentialKernelUserspace(t *testing.T) { differential(t, nf.HookInput) }

// TestDifferentialKernelUserspaceOutput runs the same on the output hook:
// the host's own packets, with oif matches.
func TestDifferentialKernelUserspaceOutput(t *testing.T) { differential(t, nf.HookOutput) }

func differential(t *testing.T, hook nf.Hook) {
	b := newDiffBed(t, hook)
	seed := *diffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -diff.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	cfg := testConfig(t)
	cfg.Hooks = []nf.Hook{hook}

	// The corpus first: every policy and packet that ever disagreed.
	cases, err := loadDiffCorpus(filepath.Join("testdata", "differential"))
	if err != nil {
		t.Fatal(err)
	}
	g := &diffGen{rng: rng, iface: b.serverIf, output: hook == nf.HookOutput}
	for i := 0; i < *diffPolicies; i++ {
		// Every fourth policy runs entirely in the kernel without state,
		// so tables without conntrack are always among those tested.
		g.kernelOnly = i%4 == 3
		text := g.policy(t)
		var pkts []diffPacket
		for j := 0; j < *diffPackets; j++ {
			pkts = append(pkts, g.packet())
		}
		cases = append(cases, diffCase{name: fmt.Sprintf("generated %d", i), policy: text, packets: pkts})
	}
	mismatches := 0
	outcomes := map[string]int{}
	dec := packet.NewDecoder()
	guards, indexed, segmented, stateless := 0, 0, 0, 0
	for ci, c := range cases {
		plan := compileText(t, cfg, c.policy)
		// Small blocks put guards (blocks.go) in front of most rules; every
		// fourth policy keeps the default size.
		plan.blockSize = []int{0, 1, 2, 3}[ci%4]
		// Every third policy gets the index (index.go) whatever its size,
		// every other one of those cut into segments of 1-3 rules, as a
		// chain longer than the scratch bits' positions is.
		if ci%3 == 1 {
			plan.indexMin = 1
			if ci%2 == 1 {
				plan.indexSegment = 1 + ci/6%3
			}
		} else {
			plan.indexMin = -1
		}
		l := plan.layout(hook, queueStmt{}, "x")
		if plan.Stateless() {
			stateless++
		}
		if plan.indexMin > 0 {
			if slices.ContainsFunc(l.main, func(r rule) bool { return r.name == RuleIndexPick }) {
				indexed++
			}
			if indexSegments(l) > 1 {
				segmented++
			}
		} else {
			guards += len(l.blocks)
		}
		cfg.Plan = plan
		if b.table == nil {
			if b.table, err = Install(b.conn, cfg); err != nil {
				t.Fatalf("%s: install: %v\n%s", c.name, err, c.policy)
			}
		} else if err := b.table.SetPlan(plan, 5); err != nil {
			t.Fatalf("%s: reload: %v\n%s", c.name, err, c.policy)
		}
		if out, err := b.net.Server.Command(t.Context(), "conntrack", "-F").CombinedOutput(); err != nil {
			t.Fatalf("conntrack -F: %v: %s", err, out)
		}
		for _, p := range c.packets {
			got, st, err := b.send(t, p)
			if err != nil {
				t.Fatalf("%s: %v\n%s", c.name, err, p)
			}
			var pkt packet.Packet
			if err := dec.Decode(p.bytes, &pkt); err != nil {
				t.Fatalf("%s: the generator built a packet the decoder refuses: %v\n%s", c.name, err, p)
			}
			in := &policies.Input{Pkt: &pkt, Hook: hook, InIf: b.serverIf, State: st}
			if hook == nf.HookOutput {
				// A raw socket's packets: root's, leaving by the veth.
				in.InIf, in.OutIf = "", b.serverIf
				in.HasUID, in.HasGID = true, true
			}
			want, err := expected(plan, in)
			kind, _, _ := strings.Cut(got, ":")
			outcomes[kind+" "+st.String()]++
			if p.frags != nil {
				outcomes["(sent in fragments)"]++
			}
			if err == nil && got == want {
				continue
			}
			mismatches++
			t.Errorf("%s: state %s: kernel %q, userspace %q %v\n%s\npolicy:\n%s", c.name, st, got, want, err, p, c.policy)
			if mismatches > 5 {
				t.Fatal("too many mismatches")
			}
		}
	}
	// A test that never reaches a kind of outcome proves nothing about it.
	t.Logf("outcomes (chain rule kind, kernel state): %v; %d guarded blocks, %d indexed policies, %d with more than one index segment, %d without conntrack", outcomes, guards, indexed, segmented, stateless)
	if guards == 0 && *diffPolicies >= 8 {
		t.Errorf("no policy had a guarded block: the guards went untested")
	}
	if indexed == 0 && *diffPolicies >= 8 {
		t.Errorf("no policy had an index: the index went untested")
	}
	if segmented == 0 && *diffPolicies >= 12 {
		t.Errorf("no policy had an index in segments: the segments went untested")
	}
	if stateless == 0 && *diffPolicies >= 8 {
		t.Errorf("no policy made a table without conntrack: stateless.go went untested")
	}
	for _, k := range []string{"rule", "queue", "default"} {
		n := 0
		for o, c := range outcomes {
			if strings.HasPrefix(o, k+" ") {
				n += c
			}
		}
		if n == 0 && *diffPolicies*(*diffPackets) >= 200 {
			t.Errorf("no packet ended at a %s rule: the generator is too narrow", k)
		}
	}
	for _, st := range []nf.State{nf.StateNew, nf.StateEstablished, nf.StateRelated, nf.StateInvalid} {
		n := 0
		for o, c := range outcomes {
			if strings.HasSuffix(o, " "+st.String()) {
				n += c
			}
		}
		if n == 0 && *diffPolicies*(*diffPackets) >= 200 {
			t.Errorf("no packet in state %s: the generator is too narrow", st)
		}
	}
}

// diffCase is one policy and its packets.
type diffCase struct {
	name    string
	policy  string
	packets []diffPacket
}

// loadDiffCorpus reads testdata/differential/*.txt: a policy, a line
// "---", then one packet a line as hex, optionally followed by " | "
// and conntrack -I arguments.
func loadDiffCorpus(dir string) ([]diffCase, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	var out []diffCase
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pol, pkts, ok := strings.Cut(string(data), "\n---\n")
		if !ok {
			return nil, fmt.Errorf("%s: no --- line", f)
		}
		c := diffCase{name: f, policy: pol}
		for _, l := range strings.Split(pkts, "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			h, ct, hasCT := strings.Cut(l, " | ")
			bs, err := hex.DecodeString(strings.TrimSpace(h))
			if err != nil {
				return nil, fmt.Errorf("%s: %v", f, err)
			}
			p := diffPacket{bytes: bs, note: "corpus"}
			if hasCT {
				p.conntrack = strings.Fields(ct)
			}
			c.packets = append(c.packets, p)
		}
		out = append(out, c)
	}
	return out, nil
}

// diffGen draws policies over every kernel-expressible field (and a few
// userspace ones, so queue rules are covered) and packets aimed at them.
type diffGen struct {
	rng   *rand.Rand
	iface string
	flow  uint16
	// output: policies and packets for the output bed: no fragments (raw
	// sockets send the packet whole), the default set for output, and no
	// reject (its reply would cross the same hook while the bed watches).
	output bool
	// kernelOnly: rules that need neither userspace nor state, so the
	// policy gets a table without conntrack (stateless.go).
	kernelOnly bool
}

func (g *diffGen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }

func (g *diffGen) maybe(p float64) bool { return g.rng.Float64() < p }

var (
	srcPool4 = []string{"10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "10.2.0.0/15", "192.0.2.0/25", "0.0.0.0/0", "10.1.2.128/25"}
	srcPool6 = []string{"2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2::3", "2001:db8:2::/47", "::/0", "::ffff:10.1.2.3", "::ffff:0:0/96"}
	dstPool4 = []string{"198.51.100.0/24", "198.51.100.0/25", "198.51.100.7", "198.51.100.128/26"}
	dstPool6 = []string{"2001:db8:100::/64", "2001:db8:100::/80", "2001:db8:100::7", "2001:db8:100::8000:0/97"}
	portPool = []string{"22", "53", "80", "443", "1000-2000", "8000-8099", "0-1023", "65535", "1024-65535", "$ports"}
	srcAddr4 = []string{"10.1.2.3", "10.1.2.200", "10.1.9.9", "10.2.3.4", "10.3.0.1", "192.0.2.77", "192.0.2.200", "172.20.0.1"}
	srcAddr6 = []string{"2001:db8:1:2::3", "2001:db8:1:2::99", "2001:db8:1:7::1", "2001:db8:2:1::1", "2001:db8:3::1", "::ffff:10.1.2.3", "fd00::5"}
	dstAddr4 = []string{"198.51.100.7", "198.51.100.8", "198.51.100.130", "198.51.100.200"}
	dstAddr6 = []string{"2001:db8:100::7", "2001:db8:100::8", "2001:db8:100::8000:1", "2001:db8:100::1:0:0:9"}
	portAddr = []uint16{22, 53, 80, 443, 1000, 1500, 2000, 2001, 8050, 8099, 1023, 1024, 65535, 0, 40000}
)

func (g *diffGen) list(pool []string, neg bool) string {
	n := 1 + g.rng.IntN(3)
	var parts []string
	for i := 0; i < n; i++ {
		s := g.pick(pool...)
		if neg && g.maybe(0.35) {
			s = "!" + s
		}
		parts = append(parts, fmt.Sprintf("%q", s))
	}
	if n == 1 && g.maybe(0.5) {
		return parts[0]
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (g *diffGen) rule(i int) string {
	m := map[string]string{}
	fam := ""
	if g.maybe(0.2) {
		fam = g.pick("ipv4", "ipv6")
		m["family"] = fam
	}
	if g.maybe(0.5) {
		m["proto"] = g.pick("tcp", "udp", "icmp", "icmpv6", "[tcp, udp]", "sctp", "[udp, icmp, icmpv6]", "gre")
	}
	addrs := func(p4, p6 []string) []string {
		switch fam {
		case "ipv4":
			return p4
		case "ipv6":
			return p6
		}
		return append(append([]string(nil), p4...), p6...)
	}
	if g.maybe(0.4) {
		m["src"] = g.list(append(addrs(srcPool4, srcPool6), "$nets"), true)
	}
	if g.maybe(0.3) {
		m["dst"] = g.list(addrs(dstPool4, dstPool6), true)
	}
	if g.maybe(0.35) {
		m["dport"] = g.list(portPool, true)
	}
	if g.maybe(0.15) {
		m["sport"] = g.list(portPool, true)
	}
	if g.maybe(0.15) {
		m["tcp_flags"] = g.pick("S/SA", "A/A", "SA", "F/F", "R/R", "P/PA", "S")
	}
	if g.maybe(0.15) {
		m["icmp_type"] = g.pick("echo-request", "echo-reply", "[echo-request, destination-unreachable]", "8", "128", "[129, time-exceeded]")
	}
	if g.maybe(0.15) {
		m["length"] = g.pick("20-100", "[60, 80-90]", "100-1500", "40-60")
	}
	if !g.kernelOnly && g.maybe(0.25) {
		m["state"] = g.pick("established", "[established, related]", "new", "invalid", "related", "[new, invalid]", "[new, established]")
	}
	if g.maybe(0.12) {
		m["iif"] = g.pick(fmt.Sprintf("%q", g.iface), fmt.Sprintf("%q", g.iface[:3]+"*"), `"eth0"`, fmt.Sprintf("[eth0, %q]", g.iface), `"*s*"`)
		if g.kernelOnly && m["iif"] == `"*s*"` {
			delete(m, "iif")
		}
	}
	var extra string
	switch {
	case g.kernelOnly:
	case g.maybe(0.05):
		m["proto"] = "tcp"
		m["tls_sni"] = "a.example"
	case g.maybe(0.05):
		extra = ", limit: {rate: 1/h, burst: 1000}"
	case g.maybe(0.04):
		m["payload"] = `{contains: "x"}`
	}
	var fields []string
	for _, k := range []string{"family", "proto", "src", "dst", "sport", "dport", "tcp_flags", "icmp_type", "length", "state", "iif", "tls_sni", "payload"} {
		if v, ok := m[k]; ok {
			fields = append(fields, k+": "+v)
		}
	}
	action := g.pick("accept", "drop", "reject", "accept", "drop")
	if g.output && action == "reject" {
		action = "drop"
	}
	attrs := ""
	if g.maybe(0.3) {
		attrs += ", log: true"
	}
	if g.maybe(0.1) {
		attrs += ", audit: true"
	}
	if action == "accept" && g.maybe(0.2) {
		attrs += ", mark: 0x42"
	}
	hook := ""
	if g.maybe(0.1) {
		hook = ", hook: output"
	}
	return fmt.Sprintf("  - {name: r%d%s, match: {%s}, action: %s%s%s}\n", i, hook, strings.Join(fields, ", "), action, attrs, extra)
}

const diffHead = `version: 1
mode: %s
default: {%s: %s, log: %v}
sets:
  nets: [10.1.0.0/16, "2001:db8:1::/48", 192.0.2.0/24]
  ports: [53, 443, 8000-8010]
rules:
`

func (g *diffGen) policy(t *testing.T) string {
	mode := "enforce"
	if g.maybe(0.1) {
		mode = "audit"
	}
	hook, def := "input", g.pick("drop", "accept", "reject")
	if g.output {
		hook, def = "output", g.pick("drop", "accept")
	}
	head := fmt.Sprintf(diffHead, mode, hook, def, g.maybe(0.5))
	text := head
	n := 3 + g.rng.IntN(8)
	for i := 0; len(text) == len(head) || i < n; i++ {
		r := g.rule(i)
		if _, err := policyload.Load("gen.yaml", []byte(text+r), nil); err != nil {
			continue // a rule that can never match, or the like: draw again
		}
		text += r
		if i > 100 {
			break
		}
	}
	return text
}

func (g *diffGen) addrs(v6 bool) (netip.Addr, netip.Addr) {
	if v6 {
		return netip.MustParseAddr(g.pick(srcAddr6...)), netip.MustParseAddr(g.pick(dstAddr6...))
	}
	return netip.MustParseAddr(g.pick(srcAddr4...)), netip.MustParseAddr(g.pick(dstAddr4...))
}

func (g *diffGen) port() uint16 { return portAddr[g.rng.IntN(len(portAddr))] }

// packet draws one packet: protocol, family, addresses and ports from the
// pools the policies use, random TCP flags and ICMP types, payloads of
// varying length, IPv4 options and IPv6 extension headers; a third of them
// in a flow the kernel already tracks (established), some ICMP errors
// quoting one (related).
func (g *diffGen) packet() diffPacket {
	v6 := g.maybe(0.45)
	src, dst := g.addrs(v6)
	if src.Is4In6() {
		// A v4-mapped source on an IPv6 packet; Build would unmap it.
		v6 = true
	}
	g.flow++
	s := packet.Spec{Src: src, Dst: dst, Seq: 1000, Ack: 2000}
	proto := g.pick("tcp", "udp", "icmp", "icmp", "sctp", "gre", "udp", "tcp")
	var note []string
	switch proto {
	case "tcp":
		s.Proto = packet.ProtoTCP
		s.TCPFlags = uint8(g.rng.IntN(256))
		if g.maybe(0.4) {
			s.TCPFlags = g.pickFlags()
		}
	case "udp":
		s.Proto = packet.ProtoUDP
	case "sctp":
		s.Proto = packet.ProtoSCTP
	case "gre":
		s.Proto = 47
	case "icmp":
		s.Proto = packet.ProtoICMP
		if v6 {
			s.Proto = packet.ProtoICMPv6
			s.ICMPType = []uint8{128, 129, 1, 3, 128, 2, 4, 8}[g.rng.IntN(8)]
		} else {
			s.ICMPType = []uint8{8, 0, 3, 11, 8, 5, 128, 13}[g.rng.IntN(8)]
		}
		s.ICMPID = g.flow
	}
	s.SrcPort, s.DstPort = g.port(), g.port()
	if g.maybe(0.3) {
		s.SrcPort = 30000 + g.flow // a fresh flow
	}
	s.Payload = make([]byte, []int{0, 4, 20, 40, 60, 200, 1000, 1400}[g.rng.IntN(8)])
	for i := range s.Payload {
		s.Payload[i] = byte(g.rng.IntN(256))
	}
	var ct []string
	related := false
	switch {
	case g.maybe(0.3):
		ct = g.conntrackArgs(s, v6)
		if ct != nil {
			note = append(note, "established flow")
		}
	case g.maybe(0.1) && !src.Is4In6():
		// An ICMP error quoting a packet the host sent on a tracked flow.
		inner := packet.Spec{Src: s.Src, Dst: s.Dst, Proto: packet.ProtoUDP, SrcPort: 40000 + g.flow, DstPort: 53}
		ct = g.conntrackArgs(inner, v6)
		quoted, err := packet.Build(packet.Spec{Src: dst, Dst: src, Proto: packet.ProtoUDP, SrcPort: 53, DstPort: 40000 + g.flow})
		if err == nil {
			typ := uint8(3)
			if v6 {
				typ = 1
			}
			b, err := packet.BuildICMPError(typ, 3, quoted, src, dst)
			if err == nil {
				related = true
				note = append(note, "icmp error on a tracked flow")
				s.Proto = 0
				return g.finish(b, v6, ct, note)
			}
		}
	}
	_ = related
	var b []byte
	var err error
	if src.Is4In6() {
		b, err = buildMapped(s)
	} else {
		b, err = packet.Build(s)
	}
	if err != nil {
		panic(fmt.Sprintf("build %+v: %v", s, err))
	}
	note = append(note, fmt.Sprintf("proto %d", s.Proto))
	return g.finish(b, v6, ct, note)
}

func (g *diffGen) pickFlags() uint8 {
	// FIN, FIN-ACK and RST without a flow are invalid to conntrack; ACK
	// and PSH-ACK mid-stream are picked up as new.
	return []uint8{packet.TCPSyn, packet.TCPSyn | packet.TCPAck, packet.TCPAck, packet.TCPAck | packet.TCPPsh, packet.TCPFin | packet.TCPAck, packet.TCPRst, packet.TCPFin}[g.rng.IntN(7)]
}

// finish adds IPv4 options or an IPv6 destination options header to some
// packets.
func (g *diffGen) finish(b []byte, v6 bool, ct []string, note []string) diffPacket {
	switch {
	case !v6 && !g.output && len(b) >= 20+48 && g.maybe(0.15):
		g.flow++
		binary.BigEndian.PutUint16(b[4:], g.flow) // the reassembly key
		b[10], b[11] = 0, 0
		binary.BigEndian.PutUint16(b[10:], checksum.Internet(0, b[:20]))
		note = append(note, "sent in ipv4 fragments of 40 bytes")
		return diffPacket{bytes: b, frags: packet.Fragment4(b, g.flow, 40), conntrack: ct, note: strings.Join(note, ", ")}
	case !v6 && g.maybe(0.2):
		b = withIPv4Options(b, []byte{1, 1, 1, 0}) // NOP NOP NOP EOL
		note = append(note, "ipv4 options")
	case v6 && g.maybe(0.2):
		b = withIPv6DestOpts(b)
		note = append(note, "ipv6 destination options")
	}
	return diffPacket{bytes: b, conntrack: ct, note: strings.Join(note, ", ")}
}

// conntrackArgs makes the kernel track s's flow as seen both ways, so s is
// established; nil for protocols conntrack -I cannot create here.
func (g *diffGen) conntrackArgs(s packet.Spec, v6 bool) []string {
	a := []string{"-s", s.Src.String(), "-d", s.Dst.String(), "-t", "120", "-u", "SEEN_REPLY,ASSURED"}
	if s.Src.Is4In6() {
		return nil
	}
	switch s.Proto {
	case packet.ProtoTCP:
		return append(a, "-p", "tcp", "--sport", fmt.Sprint(s.SrcPort), "--dport", fmt.Sprint(s.DstPort), "--state", "ESTABLISHED")
	case packet.ProtoUDP:
		return append(a, "-p", "udp", "--sport", fmt.Sprint(s.SrcPort), "--dport", fmt.Sprint(s.DstPort))
	case packet.ProtoICMP:
		if s.ICMPType != 8 {
			return nil
		}
		return append(a, "-p", "icmp", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", fmt.Sprint(s.ICMPID))
	case packet.ProtoICMPv6:
		if s.ICMPType != 128 {
			return nil
		}
		return append(a, "-p", "icmpv6", "--icmpv6-type", "128", "--icmpv6-code", "0", "--icmpv6-id", fmt.Sprint(s.ICMPID))
	}
	return nil
}

// conntrackDeletes are the conntrack -D commands that remove any entry of
// the flow conntrack -I insert would make, in either direction: insert's
// arguments without the timeout, status and state it sets, and the same
// with the addresses and ports swapped.
func conntrackDeletes(insert []string) [][]string {
	swap := map[string]string{"-s": "-d", "-d": "-s", "--sport": "--dport", "--dport": "--sport"}
	fwd, rev := []string{"-D"}, []string{"-D"}
	for i := 0; i+1 < len(insert); i += 2 {
		opt, val := insert[i], insert[i+1]
		switch opt {
		case "-t", "-u", "--state":
			continue
		}
		fwd = append(fwd, opt, val)
		if o, ok := swap[opt]; ok {
			opt = o
		}
		rev = append(rev, opt, val)
	}
	return [][]string{fwd, rev}
}

// buildMapped builds s as an IPv6 packet whose source is the v4-mapped
// address itself (Build unmaps it).
func buildMapped(s packet.Spec) ([]byte, error) {
	mapped := s.Src
	s.Src = netip.MustParseAddr("2001:db8:1:2::3")
	b, err := packet.Build(s)
	if err != nil {
		return nil, err
	}
	a := mapped.As16()
	copy(b[8:24], a[:])
	fixL4Checksum6(b)
	return b, nil
}

func withIPv4Options(b, opts []byte) []byte {
	ihl := int(b[0]&0x0f) * 4
	out := append(append(append([]byte(nil), b[:ihl]...), opts...), b[ihl:]...)
	out[0] = 4<<4 | byte((ihl+len(opts))/4)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	out[10], out[11] = 0, 0
	binary.BigEndian.PutUint16(out[10:], checksum.Internet(0, out[:ihl+len(opts)]))
	return out
}

// withIPv6DestOpts inserts an 8-byte destination options header (PadN)
// after the fixed header; the upper-layer checksum does not change.
func withIPv6DestOpts(b []byte) []byte {
	next := b[6]
	opt := []byte{next, 0, 1, 4, 0, 0, 0, 0}
	out := append(append(append([]byte(nil), b[:40]...), opt...), b[40:]...)
	out[6] = 60
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

// fixL4Checksum6 recomputes the TCP, UDP or ICMPv6 checksum of an IPv6
// packet without extension headers after its addresses changed.
func fixL4Checksum6(b []byte) {
	var off int
	switch b[6] {
	case packet.ProtoTCP:
		off = 16
	case packet.ProtoUDP:
		off = 6
	case packet.ProtoICMPv6:
		off = 2
	default:
		return
	}
	l4 := b[40:]
	l4[off], l4[off+1] = 0, 0
	src, dst := netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	binary.BigEndian.PutUint16(l4[off:], checksum.Internet(checksum.Pseudo(src, dst, b[6], len(l4)), l4))
}

// openRaw opens the raw IP sockets that send the output bed's packets,
// inside the server namespace.
func (b *diffBed) openRaw(t *testing.T) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(int(b.net.Server.Handle()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		var err error
		if b.raw4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW); err != nil {
			errc <- err
			return
		}
		b.raw6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("raw sockets in the server: %v", err)
	}
	t.Cleanup(func() { unix.Close(b.raw4); unix.Close(b.raw6) })
}

// sendRaw sends an IP packet, header included, from the server.
func (b *diffBed) sendRaw(pkt []byte) error {
	if pkt[0]>>4 == 6 {
		var sa unix.SockaddrInet6
		copy(sa.Addr[:], pkt[24:40])
		return unix.Sendto(b.raw6, pkt, 0, &sa)
	}
	var sa unix.SockaddrInet4
	copy(sa.Addr[:], pkt[16:20])
	return unix.Sendto(b.raw4, pkt, 0, &sa)
}
