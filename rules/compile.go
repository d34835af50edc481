package rules

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// Comment prefixes of the rules in a policy chain. Counters are summed by
// comment: "rule:NAME" rules decide for rule NAME in the kernel,
// "queue:NAME" rules hand packets that may match NAME to userspace, and
// "default" rules apply the hook's default.
const (
	commentRule    = "rule:"
	commentQueue   = "queue:"
	commentDefault = "default"
	// RulePolicy is the base chain's last rule when the policy runs in the
	// kernel: a jump to the hook's policy chain.
	RulePolicy = "policy"
)

// policyChain is the name of the regular chain that holds hook h's
// compiled policy. Reload flushes and refills it; the base chain that jumps
// to it is never recreated.
func policyChain(h nf.Hook) string { return h.String() + "_policy" }

// Plan is a policy compiled for the kernel (DESIGN.md, "Kernel fast path").
// Write each rule r as K(r) AND U(r): K the part nftables reproduces
// exactly, U the part only userspace can judge. For each hook, in policy
// order, a rule with empty U becomes `K(r) counter [log] verdict`; a rule
// with U becomes `K(r) counter queue`; the hook's default is the chain's
// last rule. A packet that reaches the queue rule of r failed K of every
// earlier rule, so userspace, deciding with the whole policy, finds r or a
// later rule first: the same answer the kernel would give had it known U.
//
// A Plan is immutable and safe for concurrent use.
type Plan struct {
	prog   *policies.Program
	chains [nf.NumHooks][]planRule
	// why[i] says why rule i needs userspace, "" when it runs in the kernel.
	why []string
	// owner[i]: rule i's uid or gid runs in the kernel on output (its
	// SYN-ACKs queued, owner_compile.go) and is queued on input.
	owner []bool
	// ownerIn[i]: owner[i], and rule i applies on input too.
	ownerIn []bool
	// model is the program of every rule's K, for Path. synAckModel is the
	// same with owner rules' uid and gid left out: what an output SYN-ACK
	// meets, whose first owner rule queues it.
	model, synAckModel *policies.Program
	marks              nf.Marks
	// blockSize is the rules per guarded block (0: defaultBlockSize).
	blockSize int
	// stateless: no rule needs userspace or reads state, so the table
	// needs no conntrack (stateless.go).
	stateless bool
	// indexMin is the fewest rules that get the indexed layout (0:
	// the package's indexMin, negative: never).
	indexMin int
	// indexSegment is the most rules in one segment of the index (0: as
	// many as the scratch bits hold positions for); tests set it small.
	indexSegment int
}

// planRule is one rule of a policy chain: its match, and either a queue
// (filled in at install, when the queue kind is known) or its action.
type planRule struct {
	comment string
	match   []stmt
	action  []stmt
	queue   bool
}

func (r planRule) rule(q queueStmt) rule {
	stmts := append([]stmt(nil), r.match...)
	if r.queue {
		// Not a hit: the agent counts the packet when it decides it.
		stmts = append(stmts, counterStmt{}, q)
	} else {
		stmts = append(stmts, counterRef(hitCounter(r.ruleName())))
		stmts = append(stmts, r.action...)
	}
	return rule{name: r.comment, stmts: stmts}
}

// ruleName is the policy rule a deciding rule counts for ("default" for a
// default).
func (r planRule) ruleName() string {
	if r.comment == commentDefault {
		return commentDefault
	}
	return strings.TrimPrefix(r.comment, commentRule)
}

// hitCounter names the counter object of a policy rule's kernel hits. The
// object outlives reloads (a reload adds only the objects it lacks), so a
// rule's count never goes back, and no packet counted between reading the
// old rules and replacing them is lost. Object names must be identifiers;
// rule names need not be, so the name is a hash of the rule name.
func hitCounter(rule string) string {
	h := fnv.New64a()
	h.Write([]byte(rule))
	return fmt.Sprintf("hit_%016x", h.Sum64())
}

// counters is every hit counter object the plan's rules use, by object
// name, with the rule each counts for.
func (p *Plan) counters() map[string]string {
	out := map[string]string{}
	for _, ch := range p.chains {
		for _, r := range ch {
			if !r.queue {
				out[hitCounter(r.ruleName())] = r.ruleName()
			}
		}
	}
	return out
}

// conj is one conjunction of matches; a rule compiles to a disjunction of
// them (one per address family, interface pattern, length range, ...),
// all with the same outcome, so their order does not matter.
type conj struct {
	stmts []stmt
	queue bool // this part of the rule needs userspace
}

// WithQueueAll is cfg for --kernel-rules off: every packet that can be
// queued is, and prog's plan decides the few the kernel cannot queue (see
// Config.QueueAll). On an error cfg comes back unchanged.
func WithQueueAll(prog *policies.Program, cfg Config) (Config, error) {
	plan, err := Compile(prog, cfg)
	if err != nil {
		return cfg, err
	}
	cfg.Plan, cfg.QueueAll = plan, true
	return cfg, nil
}

// Compile builds the kernel plan of prog for the rules' marks and log group
// in cfg. It never fails on a policy the loader accepted: whatever it cannot
// express is queued.
func Compile(prog *policies.Program, cfg Config) (*Plan, error) {
	if prog == nil {
		return nil, fmt.Errorf("rules: compile: nil program")
	}
	if !cfg.Marks.Valid() {
		return nil, fmt.Errorf("rules: compile: mark layout not set")
	}
	src := prog.SourceRules()
	p := &Plan{prog: prog, marks: cfg.Marks, why: make([]string, len(src)), owner: make([]bool, len(src)), ownerIn: make([]bool, len(src))}
	model := make([]*policies.Rule, len(src))
	synAck := make([]*policies.Rule, len(src))
	for i := range src {
		r := &src[i]
		p.why[i] = userspaceReason(r)
		p.owner[i] = p.why[i] == "" && hasOwnerID(&r.Match)
		p.ownerIn[i] = p.owner[i] && r.Hooks&(1<<nf.HookInput) != 0
		model[i] = kernelModel(r)
		synAck[i] = model[i]
		if p.owner[i] {
			synAck[i] = withoutOwner(model[i])
		}
	}
	p.stateless = statelessRules(src, p.why, p.owner)
	var err error
	if p.model, err = prog.CompileRules(model); err != nil {
		return nil, fmt.Errorf("rules: compile the kernel model: %w", err)
	}
	if p.synAckModel, err = prog.CompileRules(synAck); err != nil {
		return nil, fmt.Errorf("rules: compile the kernel model of SYN-ACKs: %w", err)
	}
	for h := nf.HookInput; h < nf.NumHooks; h++ {
		out := p.malformedRules()
		for i := range src {
			r := &src[i]
			if r.Hooks&(1<<h) == 0 {
				continue
			}
			d := prog.StaticDecision(int32(i), h)
			cs := p.conjs(i, r)
			if p.owner[i] {
				cs = ownerHook(cs, h)
			}
			for _, c := range cs {
				name := commentRule + r.Name
				if c.queue {
					name = commentQueue + r.Name
				}
				out = append(out, actionRules(cfg, name, c, d)...)
			}
		}
		d := prog.StaticDecision(policies.NoRule, h)
		out = append(out, actionRules(cfg, commentDefault, conj{}, d)...)
		if h == nf.HookOutput && !p.stateless {
			out = queueableOnly(out)
		}
		p.chains[h] = out
	}
	return p, nil
}

// queueableOnly writes every queue rule of rs twice, once per alternative
// of queueable, so that an unqueueable packet passes the queue rules as if
// they did not match. On output that packet is the reply the kernel sends
// for a packet it rejects (a TCP reset, an ICMP unreachable), and the
// rules the kernel runs decide it (docs/policy.md, "Replies to rejected
// packets").
func queueableOnly(rs []planRule) []planRule {
	out := make([]planRule, 0, len(rs))
	for _, r := range rs {
		if !r.queue {
			out = append(out, r)
			continue
		}
		for _, s := range queueable() {
			c := r
			c.match = append(slices.Clone(r.match), s)
			out = append(out, c)
		}
	}
	return out
}

// Program is the policy the plan was compiled from.
func (p *Plan) Program() *policies.Program { return p.prog }

// Kernel reports how many rules are decided in the kernel entirely.
func (p *Plan) Kernel() int {
	n := 0
	for i, w := range p.why {
		if w == "" && !p.ownerIn[i] {
			n++
		}
	}
	return n
}

// Why says why rule i (partly) needs userspace, "" if it runs in the kernel.
func (p *Plan) Why(i int) string {
	if i < 0 || i >= len(p.why) {
		return ""
	}
	if p.ownerIn[i] {
		return ownerInputReason
	}
	return p.why[i]
}

// ownerHook is an owner rule's conjunctions on hook h: queued on input,
// and on output each preceded by the one that queues its SYN-ACKs.
func ownerHook(cs []conj, h nf.Hook) []conj {
	var out []conj
	for _, c := range cs {
		switch {
		case c.queue:
			out = append(out, c)
		case h == nf.HookInput:
			out = append(out, conj{stmts: c.stmts, queue: true})
		default:
			out = append(out, ownerSynAck(c), c)
		}
	}
	return out
}

// Path is where a packet is decided: "kernel" when the first rule whose
// kernel part matches it decides in the kernel (or no rule does and the
// default applies), "queue" when that rule queues it. in must describe the
// packet as Decide sees it.
func (p *Plan) Path(in *policies.Input) string {
	if p.Guarded(in) {
		return "queue"
	}
	r := p.FirstKernelMatch(in)
	if r == policies.NoRule {
		return "kernel"
	}
	i := int(r)
	if p.why[i] != "" || p.owner[i] && (in.Hook == nf.HookInput || isSynAck(in)) {
		return "queue"
	}
	return "kernel"
}

// FirstKernelMatch is the rule whose kernel part the packet matches first,
// policies.NoRule for none: the chain rule the kernel stops at.
func (p *Plan) FirstKernelMatch(in *policies.Input) int32 {
	if isSynAck(in) {
		return p.synAckModel.Decide(in).Rule
	}
	return p.model.Decide(in).Rule
}

// knownMatch and knownRule are the fields this compiler understands. A
// field added to policies.Match or policies.Rule later (uid, cgroup,
// http_host, ...) is not in them, so a rule that sets it is queued until the
// compiler learns it: new fields stay correct by default.
var knownMatch = map[string]bool{
	"Protos": true, "Family": true, "Src": true, "Dst": true, "Sport": true, "Dport": true,
	"Iif": true, "Oif": true, "States": true, "TCPFlags": true, "HasICMPType": true,
	"ICMP4Types": true, "ICMP6Types": true, "Length": true, "UID": true, "GID": true,
}

// userspaceMatch are the known fields only userspace can judge.
var userspaceMatch = map[string]string{"DNSQName": "dns_qname", "TLSSNI": "tls_sni", "Payload": "payload"}

var knownRule = map[string]bool{
	"Name": true, "Hooks": true, "Action": true, "Log": true, "LogPrefix": true,
	"HasMark": true, "Mark": true, "Offload": true, "Audit": true, "Match": true, "Limit": true,
}

// userspaceReason names what keeps r out of the kernel, "" for nothing.
func userspaceReason(r *policies.Rule) string {
	m := reflect.ValueOf(r.Match)
	for i := 0; i < m.NumField(); i++ {
		f := m.Type().Field(i)
		if !f.IsExported() || m.Field(i).IsZero() || knownMatch[f.Name] {
			continue
		}
		if n, ok := userspaceMatch[f.Name]; ok {
			return n + " needs userspace"
		}
		return "match field " + f.Name + " is not compiled to the kernel yet"
	}
	rv := reflect.ValueOf(*r)
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if f.IsExported() && !knownRule[f.Name] && !rv.Field(i).IsZero() {
			return "rule key " + f.Name + " is not compiled to the kernel yet"
		}
	}
	if r.Limit != nil {
		// nft's limit refills differently (and per src needs a meter), so
		// the rule would match a different set of packets.
		return "limit needs userspace"
	}
	for _, x := range []struct {
		pats []string
		name string
	}{{r.Match.Iif, "iif"}, {r.Match.Oif, "oif"}} {
		for _, pat := range x.pats {
			if _, _, ok := ifacePattern(pat); !ok {
				return fmt.Sprintf("%s pattern %q needs userspace (the kernel matches only a trailing *)", x.name, pat)
			}
		}
	}
	return ""
}

// ifaceKernel reports whether the kernel can test m's interface patterns.
func ifaceKernel(m *policies.Match) bool {
	return userspaceReason(&policies.Rule{Match: policies.Match{Iif: m.Iif, Oif: m.Oif}}) == ""
}

// ifacePattern splits an interface pattern the kernel can match: a name, or
// a prefix followed by one trailing *. any: the pattern matches every name.
func ifacePattern(pat string) (name string, prefix, ok bool) {
	if pat == "*" {
		return "", true, true
	}
	stem, star := strings.CutSuffix(pat, "*")
	if strings.Contains(stem, "*") {
		return "", false, false
	}
	return stem, star, true
}

// kernelModel is r reduced to K(r), as a rule the userspace engine can
// evaluate: the part of the match the kernel tests.
func kernelModel(r *policies.Rule) *policies.Rule {
	k := *r
	k.Limit = nil
	k.Match = policies.Match{
		Protos: r.Match.Protos, Family: r.Match.Family, Src: r.Match.Src, Dst: r.Match.Dst,
		Sport: r.Match.Sport, Dport: r.Match.Dport, States: r.Match.States, TCPFlags: r.Match.TCPFlags,
		HasICMPType: r.Match.HasICMPType, ICMP4Types: r.Match.ICMP4Types, ICMP6Types: r.Match.ICMP6Types,
		Length: r.Match.Length, UID: r.Match.UID, GID: r.Match.GID,
	}
	if ifaceKernel(&r.Match) {
		k.Match.Iif, k.Match.Oif = r.Match.Iif, r.Match.Oif
	}
	return &k
}

// conjs is K(rule i) as a disjunction of conjunctions, each marked queue
// when that part of the rule needs userspace. An empty result: K never
// matches (e.g. a reference to an empty set), so neither does the rule.
func (p *Plan) conjs(i int, r *policies.Rule) []conj {
	m := &r.Match
	d := disjunction{{}}
	d.and(familyAlts(m)...)
	if !d.andPorts(m) {
		return nil
	}
	if m.TCPFlags != nil {
		d.and([]stmt{maskMatch{field: fieldTCPFlags, mask: m.TCPFlags.Mask, want: m.TCPFlags.Want}})
	}
	if len(m.Length) > 0 {
		var alts [][]stmt
		for _, l := range m.Length {
			alts = append(alts, []stmt{metaLenMatch(l.Lo, l.Hi)})
		}
		d.and(alts...)
	}
	// Interface patterns are part of K unless they are what needs
	// userspace; the model (kernelModel) draws the same line.
	if ifaceKernel(m) {
		d.andIfaces(m)
	}
	if m.States != 0 {
		d.and(p.stateAlts(m.States)...)
	}
	if hasOwnerID(m) {
		alt, ok := ownerStmts(m)
		if !ok {
			return nil
		}
		d.and(alt)
	}
	if p.why[i] != "" {
		for j := range d {
			d[j].queue = true
		}
	}
	return d
}

// disjunction is a rule's kernel match being built: any of its
// conjunctions.
type disjunction []conj

// and multiplies the disjunction by alternatives (none: it never holds).
func (d *disjunction) and(alts ...[]stmt) {
	var next disjunction
	for _, c := range *d {
		for _, a := range alts {
			next = append(next, conj{stmts: append(append([]stmt(nil), c.stmts...), a...), queue: c.queue})
		}
	}
	*d = next
}

// familyAlts is one alternative per family when any field depends on it.
func familyAlts(m *policies.Match) [][]stmt {
	fams := []packet.Family{0}
	if m.Family != 0 || !m.Src.Any() || !m.Dst.Any() || m.HasICMPType {
		fams = nil
		for _, f := range []packet.Family{packet.IPv4, packet.IPv6} {
			if m.Family == 0 || m.Family == f {
				fams = append(fams, f)
			}
		}
	}
	var alts [][]stmt
	for _, f := range fams {
		if alt, ok := familyStmts(m, f); ok {
			alts = append(alts, alt)
		}
	}
	return alts
}

// andPorts adds the port tests; false when one can never hold.
func (d *disjunction) andPorts(m *policies.Match) bool {
	if !m.Sport.Set && !m.Dport.Set {
		return true
	}
	if len(m.Protos) == 0 {
		// Ports exist for these protocols only (docs/policy.md); the
		// kernel reads ports of anything else as whatever bytes are there.
		d.and([]stmt{protoSet([]uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP})})
	}
	for _, x := range []struct {
		pm *policies.PortMatch
		f  payloadField
	}{{&m.Sport, fieldSport}, {&m.Dport, fieldDport}} {
		if !x.pm.Set {
			continue
		}
		alt, ok := portStmts(x.pm, x.f)
		if !ok {
			return false
		}
		d.and(alt)
	}
	return true
}

// andIfaces adds the iif and oif name tests.
func (d *disjunction) andIfaces(m *policies.Match) {
	for _, x := range []struct {
		pats []string
		out  bool
	}{{m.Iif, false}, {m.Oif, true}} {
		if len(x.pats) == 0 {
			continue
		}
		var alts [][]stmt
		for _, pat := range x.pats {
			name, prefix, _ := ifacePattern(pat)
			if prefix && name == "" {
				alts = [][]stmt{nil}
				break
			}
			alts = append(alts, []stmt{ifnameMatch{out: x.out, name: name, prefix: prefix}})
		}
		d.and(alts...)
	}
}

// stateAlts tests the state bits the kernel sets before the policy chain
// from its own conntrack (nf.Marks; the same bits userspace reads as the
// packet's state): established, related and invalid each by its own bit,
// new by none of them. The kernel sets at most one (ct state established,
// related and invalid exclude each other), so a list of states is a test
// of the bits that list leaves out, or of the one it keeps.
func (p *Plan) stateAlts(s uint8) [][]stmt {
	all := uint8(1<<nf.StateNew | 1<<nf.StateEstablished | 1<<nf.StateRelated | 1<<nf.StateInvalid)
	if s&all == all {
		return [][]stmt{nil}
	}
	bit := map[nf.State]uint32{
		nf.StateEstablished: p.marks.EstablishedBit(),
		nf.StateRelated:     p.marks.RelatedBit(),
		nf.StateInvalid:     p.marks.InvalidBit(),
	}
	var in, out uint32
	for st, b := range bit {
		if s&(1<<st) != 0 {
			in |= b
		} else {
			out |= b
		}
	}
	if s&(1<<nf.StateNew) != 0 {
		// New and the listed states: none of the others' bits.
		return [][]stmt{{maskedCmp{key: keyMeta, mask: out, value: 0}}}
	}
	// Only states with a bit: one of theirs is set.
	return [][]stmt{{maskedCmpNeq{key: keyMeta, mask: in}}}
}

// familyStmts is the family test and the address and ICMP matches of m for
// family f (0: the rule looks at no family-dependent field). ok is false
// when the rule cannot match packets of f.
func familyStmts(m *policies.Match, f packet.Family) ([]stmt, bool) {
	if f == 0 {
		if len(m.Protos) > 0 {
			return []stmt{protoSet(m.Protos)}, true
		}
		return nil, true
	}
	is4 := f == packet.IPv4
	var out []stmt
	if is4 {
		out = append(out, nfproto(unix.NFPROTO_IPV4))
	} else {
		out = append(out, nfproto(unix.NFPROTO_IPV6))
	}
	if m.HasICMPType {
		// The decoder reads an ICMP header only as the family's own ICMP,
		// so a type match holds for ICMP in IPv4 and ICMPv6 in IPv6 only.
		types, proto, field, kt := m.ICMP4Types, uint8(packet.ProtoICMP), fieldICMPType, nftables.TypeICMPType
		if !is4 {
			types, proto, field, kt = m.ICMP6Types, packet.ProtoICMPv6, fieldICMP6, nftables.TypeICMP6Type
		}
		if types == nil || (len(m.Protos) > 0 && !containsProto(m.Protos, proto)) {
			return nil, false
		}
		out = append(out, l4proto(proto), icmpTypeSet(types, field, kt))
	} else if len(m.Protos) > 0 {
		out = append(out, protoSet(m.Protos))
	}
	for _, x := range []struct {
		am    *policies.AddrMatch
		f4    payloadField
		f6    payloadField
		field string
	}{{&m.Src, fieldIPSaddr, fieldIP6Saddr, "src"}, {&m.Dst, fieldIPDaddr, fieldIP6Daddr, "dst"}} {
		fld := x.f4
		if !is4 {
			fld = x.f6
		}
		var pos, neg []netip.Prefix
		for _, p := range x.am.Pos {
			if p.Addr().Is4() == is4 {
				pos = append(pos, p)
			}
		}
		for _, p := range x.am.Neg {
			if p.Addr().Is4() == is4 {
				neg = append(neg, p)
			}
		}
		if x.am.HasPos {
			if len(pos) == 0 {
				return nil, false
			}
			out = append(out, addrStmt(fld, pos, false, is4))
		}
		if len(neg) > 0 {
			out = append(out, addrStmt(fld, neg, true, is4))
		}
	}
	return out, true
}

func containsProto(ps []uint8, p uint8) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// addrStmt matches (neg: does not match) any of ps.
func addrStmt(f payloadField, ps []netip.Prefix, neg, is4 bool) stmt {
	var rs [][2][]byte
	for _, p := range ps {
		rs = append(rs, prefixRange(p))
	}
	rs = mergeRanges(rs)
	if len(rs) == 1 {
		if p, ok := rangePrefix(rs[0]); ok {
			return prefixMatch{field: f, pfx: p, neg: neg}
		}
	}
	kt := nftables.TypeIPAddr
	if !is4 {
		kt = nftables.TypeIP6Addr
	}
	return setMatch{load: f.load(), loadText: f.name, keyType: kt, interval: true, ranges: rs, neg: neg, show: showAddr}
}

// rangePrefix is the prefix covering exactly r, if there is one.
func rangePrefix(r [2][]byte) (netip.Prefix, bool) {
	lo, _ := netip.AddrFromSlice(r[0])
	for bits := 0; bits <= lo.BitLen(); bits++ {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() != lo {
			continue
		}
		pr := prefixRange(p)
		if string(pr[1]) == string(r[1]) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// portStmts is a port match: any of Pos (if written), none of Neg. ok is
// false when Pos is written but empty (an empty set): the rule never
// matches.
func portStmts(pm *policies.PortMatch, f payloadField) ([]stmt, bool) {
	var out []stmt
	conv := func(rs []policies.PortRange) [][2][]byte {
		var out [][2][]byte
		for _, r := range rs {
			out = append(out, [2][]byte{bigEndian16(r.Lo), bigEndian16(r.Hi)})
		}
		return mergeRanges(out)
	}
	one := func(rs [][2][]byte, neg bool) stmt {
		if len(rs) == 1 {
			return rangeMatch{field: f, lo: rs[0][0], hi: rs[0][1], neg: neg}
		}
		return setMatch{load: f.load(), loadText: f.name, keyType: nftables.TypeInetService, interval: true, ranges: rs, neg: neg, show: beText}
	}
	if pm.HasPos {
		if len(pm.Pos) == 0 {
			return nil, false
		}
		out = append(out, one(conv(pm.Pos), false))
	}
	if len(pm.Neg) > 0 {
		out = append(out, one(conv(pm.Neg), true))
	}
	if len(out) == 0 {
		// A port field with nothing in it still requires ports: a TCP,
		// UDP or SCTP header the kernel can read.
		out = append(out, rangeMatch{field: f, lo: bigEndian16(0), hi: bigEndian16(0xffff)})
	}
	return out, true
}

// protoSet is `meta l4proto P` or `meta l4proto { P, Q }`.
func protoSet(ps []uint8) stmt {
	if len(ps) == 1 {
		return l4proto(ps[0])
	}
	var rs [][2][]byte
	for _, p := range ps {
		rs = append(rs, [2][]byte{{p}, {p}})
	}
	return setMatch{
		load: &expr.Meta{Register: 1, Key: expr.MetaKeyL4PROTO}, loadText: "meta l4proto",
		keyType: nftables.TypeInetProto, ranges: mergePlain(rs), show: beText,
	}
}

// icmpTypeSet matches the ICMP or ICMPv6 type against the set bits.
func icmpTypeSet(types *[4]uint64, f payloadField, kt nftables.SetDatatype) stmt {
	var rs [][2][]byte
	for t := 0; t < 256; t++ {
		if types[t/64]&(1<<(t%64)) != 0 {
			rs = append(rs, [2][]byte{{byte(t)}, {byte(t)}})
		}
	}
	if len(rs) == 1 {
		return rangeMatch{field: f, lo: rs[0][0], hi: rs[0][1]}
	}
	return setMatch{load: f.load(), loadText: f.name, keyType: kt, ranges: rs, show: beText}
}

// mergePlain sorts the keys of a plain (non-interval) set and drops
// duplicates.
func mergePlain(rs [][2][]byte) [][2][]byte {
	var out [][2][]byte
	for _, r := range mergeRanges(rs) {
		// mergeRanges joins adjacent keys into ranges; split them again.
		lo, hi := r[0], r[1]
		for k := lo; ; {
			out = append(out, [2][]byte{k, k})
			if string(k) == string(hi) {
				break
			}
			k, _ = increment(k)
		}
	}
	return out
}

// maskedCmpNeq is `<key> & mask != 0`.
type maskedCmpNeq struct {
	key  markKey
	mask uint32
}

func (s maskedCmpNeq) exprs() []expr.Any {
	return []expr.Any{
		s.key.load(),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: u32(s.mask), Xor: u32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: u32(0)},
	}
}

func (s maskedCmpNeq) text() string {
	return fmt.Sprintf("%s & 0x%08x != 0x%08x", s.key, s.mask, 0)
}

// actionRules is conjunction c followed by the decision d, as the rules at
// the top of the chain would carry it out had userspace answered d with
// NF_REPEAT (pipeline.Encode): the same mark, log prefix and verdict. A
// reject splits in two, TCP reset and ICMP port unreachable, as those rules
// do.
func actionRules(cfg Config, comment string, c conj, d policies.Decision) []planRule {
	if c.queue {
		return []planRule{{comment: comment, match: c.stmts, queue: true}}
	}
	m := cfg.Marks
	id := uint32(0)
	if d.Rule >= 0 {
		id = uint32(d.Rule) + 1
	}
	field := func(a nf.MarkAction) uint32 { return m.Encode(0, a, id) & m.Mask }
	logged := func(a nf.MarkAction) []stmt {
		return []stmt{markSet{keep: ^m.Mask, set: field(a)}, logStmt{LogPrefix(a), cfg.LogGroup}}
	}
	clear := markSet{keep: ^m.Mask}
	one := func(action ...stmt) []planRule {
		return []planRule{{comment: comment, match: c.stmts, action: action}}
	}
	reject := func(pre ...stmt) []planRule {
		tcp := append(append([]stmt{l4proto(unix.IPPROTO_TCP)}, pre...), rejectTCP{})
		return []planRule{
			{comment: comment, match: append(append([]stmt(nil), c.stmts...), tcp[0]), action: tcp[1:]},
			{comment: comment, match: c.stmts, action: append(append([]stmt(nil), pre...), rejectICMPX{})},
		}
	}
	if d.Audit && d.Action != policies.ActionAccept {
		a := nf.MarkWouldDrop
		if d.Action == policies.ActionReject {
			a = nf.MarkWouldReject
		}
		return one(append(logged(a), clear, verdict(expr.VerdictAccept))...)
	}
	switch d.Action {
	case policies.ActionDrop:
		if d.Log {
			return one(append(logged(nf.MarkDropLog), verdict(expr.VerdictDrop))...)
		}
		return one(verdict(expr.VerdictDrop))
	case policies.ActionReject:
		if d.Log {
			return reject(logged(nf.MarkRejectLog)...)
		}
		return reject()
	}
	var pre []stmt
	if d.Log {
		if d.SetMark {
			pre = append(pre, markSet{keep: 0, set: m.Encode(d.Mark, nf.MarkAcceptLog, id)}, logStmt{LogPrefix(nf.MarkAcceptLog), cfg.LogGroup})
		} else {
			pre = append(pre, logged(nf.MarkAcceptLog)...)
		}
		pre = append(pre, clear)
	} else if d.SetMark {
		pre = append(pre, markSet{keep: 0, set: d.Mark &^ m.Mask})
	}
	return one(append(pre, verdict(expr.VerdictAccept))...)
}
