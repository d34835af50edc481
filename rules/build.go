package rules

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
)

// Rule names. Each rule carries its name as its nft comment, which is how
// Install finds the handles of the rules it later rewrites in place, and how
// an operator reading `nft list table inet fwagent` sees what a rule is for.
const (
	RuleDropLog       = "droplog"
	RuleRejectTCP     = "reject-tcp"
	RuleReject        = "reject"
	RuleRejectLogTCP  = "rejectlog-tcp"
	RuleRejectLog     = "rejectlog"
	RuleAcceptLog     = "acceptlog"
	RuleWouldDrop     = "would_drop"
	RuleWouldReject   = "would_reject"
	RuleOffloadSet    = "offload-set"
	RuleOffloadSetRep = "offload-set-reply"
	RuleOffload       = "offload"
	RuleOffloadReply  = "offload-reply"
	RuleOffloadStale  = "offload-stale"
	RuleLooped        = "looped"
	RuleLoopback      = "loopback"
	RuleICMPv6ND      = "icmpv6-nd"
	RuleEstablished   = "established"
	RuleRelated       = "related"
	RuleInvalid       = "invalid"
	RuleQueue         = "queue"
	logPrefixBase     = "fwagent:"
	icmpv6NDFirst     = 133 // router solicitation (RFC 4861)
	icmpv6NDLast      = 137 // redirect (RFC 4861)
	loopbackIfindex   = 1   // the kernel always gives lo ifindex 1 in every namespace
	xtNFQueueRevision = 3
	xtNFQFlagBypass   = 0x1 // NFQ_FLAG_BYPASS
	xtNFQFlagFanout   = 0x2 // NFQ_FLAG_CPU_FANOUT
)

// LogPrefix is the NFLOG prefix the kernel rules use for action a:
// "fwagent:drop", "fwagent:reject", "fwagent:accept", "fwagent:would_drop",
// "fwagent:would_reject".
func LogPrefix(a nf.MarkAction) string { return logPrefixBase + a.String() }

// rule is one rule of a base chain, described once and turned into either
// netlink expressions (Install) or nft syntax (Render), so the two cannot
// drift apart.
type rule struct {
	name  string
	stmts []stmt
}

// stmt is one nft statement: a match, an action or a verdict.
type stmt interface {
	exprs() []expr.Any
	text() string
}

func (r rule) exprs() []expr.Any {
	var out []expr.Any
	for _, s := range r.stmts {
		out = append(out, s.exprs()...)
	}
	return out
}

func (r rule) text() string {
	var b strings.Builder
	for i, s := range r.stmts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.text())
	}
	fmt.Fprintf(&b, " comment %q", r.name)
	return b.String()
}

func (r rule) userData() []byte {
	return userdata.AppendString(nil, userdata.TypeComment, r.name)
}

func (r rule) nft(t *nftables.Table, c *nftables.Chain) *nftables.Rule {
	return &nftables.Rule{Table: t, Chain: c, Exprs: r.exprs(), UserData: r.userData()}
}

// chainRules is the ordered rule list of the base chain for hook h; see
// doc.go for why each rule exists and why in this order.
func chainRules(cfg Config, h nf.Hook, kind QueueKind) []rule {
	if cfg.stateless() {
		return statelessChainRules(cfg, h)
	}
	m := cfg.Marks
	off := offloadRules(cfg, h)
	answers := answerRules(cfg)
	// Offloaded flows are most of the packets that reach this chain on a
	// busy host; their rules come first so they skip the mark rules. No
	// packet of an offloaded flow carries an action mark: the agent never
	// sees it, so never answers it with one.
	rs := []rule{off[offOrig], off[offReply], off[offStale]}
	rs = append(rs, answers[:len(answers)-1]...)
	rs = append(rs, off[offSet], off[offSetReply], answers[len(answers)-1])
	rs = append(rs, acceptRules(cfg, h)...)
	rs = append(rs, pickupRules(cfg)...)
	// The kernel's conntrack view, for the policy's `state` (userspace
	// reads these bits; kernel-compiled state matches test the same bits).
	rs = append(rs,
		rule{RuleEstablished, []stmt{ctState{bit: expr.CtStateBitESTABLISHED, name: "established"}, markSet{keep: ^m.EstablishedBit(), set: m.EstablishedBit()}}},
		rule{RuleRelated, []stmt{ctState{bit: expr.CtStateBitRELATED, name: "related"}, markSet{keep: ^m.RelatedBit(), set: m.RelatedBit()}}},
		rule{RuleInvalid, []stmt{ctState{bit: expr.CtStateBitINVALID, name: "invalid"}, markSet{keep: ^m.InvalidBit(), set: m.InvalidBit()}}},
	)
	if cfg.Plan != nil {
		// The compiled policy decides what it can in the kernel and queues
		// the rest; it lives in its own chain so a reload can refill it
		// without touching this one.
		rs = append(rs, policyJump(cfg, policyChain(h)))
		if !cfg.QueueAll {
			return rs
		}
	}
	return append(rs, rule{RuleQueue, []stmt{cfg.queueStmt(kind)}})
}

// policyJump is the base chain's jump to its policy chain target: every
// packet that reaches it, or with QueueAll only the packets the kernel
// would refuse to queue.
func policyJump(cfg Config, target string) rule {
	if cfg.QueueAll {
		return rule{RulePolicy, append(unqueueable(), jumpStmt(target))}
	}
	return rule{RulePolicy, []stmt{jumpStmt(target)}}
}

// unqueueable matches a packet NFQUEUE drops instead of queueing: one
// related to a conntrack entry that is not confirmed yet and that the
// packet shares, such as the reset or ICMP error the kernel sends for a
// packet it is rejecting. queueable is its negation, as alternatives (nft
// cannot negate a conjunction).
func unqueueable() []stmt {
	return []stmt{ctState{bit: expr.CtStateBitRELATED, name: "related"}, ctConfirmed(false)}
}

func queueable() []stmt {
	return []stmt{ctState{bit: expr.CtStateBitRELATED, name: "related", not: true}, ctConfirmed(true)}
}

// ctConfirmed is `ct status confirmed`, the packet's conntrack entry is
// in the kernel's table, or `ct status ! confirmed` when false.
type ctConfirmed bool

// ipsConfirmed is IPS_CONFIRMED of the conntrack status bits.
const ipsConfirmed = 1 << 3

func (c ctConfirmed) exprs() []expr.Any {
	op := expr.CmpOpEq
	if c {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: u32(ipsConfirmed), Xor: u32(0)},
		&expr.Cmp{Op: op, Register: 1, Data: u32(0)},
	}
}

func (c ctConfirmed) text() string {
	if c {
		return "ct status confirmed"
	}
	return "ct status ! confirmed"
}

// answerRules carry out the agent's answers (NF_REPEAT with an action in
// the mark): the action rules, then the looped rule, last. A stateful base
// chain has the offload-set rules before the looped one.
func answerRules(cfg Config) []rule {
	m := cfg.Marks
	act := m.ActionMask()
	group := cfg.LogGroup
	isAction := func(a nf.MarkAction) stmt { return maskedCmp{key: keyMeta, mask: act, value: m.Action(a)} }
	clear := markSet{keep: ^m.Mask}
	return []rule{
		{RuleDropLog, []stmt{isAction(nf.MarkDropLog), logStmt{LogPrefix(nf.MarkDropLog), group}, verdict(expr.VerdictDrop)}},
		{RuleRejectTCP, []stmt{isAction(nf.MarkReject), l4proto(unix.IPPROTO_TCP), rejectTCP{}}},
		{RuleReject, []stmt{isAction(nf.MarkReject), rejectICMPX{}}},
		{RuleRejectLogTCP, []stmt{isAction(nf.MarkRejectLog), l4proto(unix.IPPROTO_TCP), logStmt{LogPrefix(nf.MarkRejectLog), group}, rejectTCP{}}},
		{RuleRejectLog, []stmt{isAction(nf.MarkRejectLog), logStmt{LogPrefix(nf.MarkRejectLog), group}, rejectICMPX{}}},
		{RuleAcceptLog, []stmt{isAction(nf.MarkAcceptLog), logStmt{LogPrefix(nf.MarkAcceptLog), group}, clear, verdict(expr.VerdictAccept)}},
		{RuleWouldDrop, []stmt{isAction(nf.MarkWouldDrop), logStmt{LogPrefix(nf.MarkWouldDrop), group}, clear, verdict(expr.VerdictAccept)}},
		{RuleWouldReject, []stmt{isAction(nf.MarkWouldReject), logStmt{LogPrefix(nf.MarkWouldReject), group}, clear, verdict(expr.VerdictAccept)}},
		// An action nothing above consumed: an offload request from an
		// older generation (the agent answered just before a reload), or
		// one for a packet without conntrack. The agent accepted it; doing
		// so here spares a second trip through the queue and keeps the ID
		// bits, which share room with the state bits, away from the rules
		// below that read state.
		{RuleLooped, []stmt{maskedCmp{key: keyMeta, mask: act, value: 0, op: expr.CmpOpNeq}, clear, verdict(expr.VerdictAccept)}},
	}
}

// acceptRules accept, before the policy, what the configuration says the
// kernel accepts: loopback and ICMPv6 neighbour discovery.
func acceptRules(cfg Config, h nf.Hook) []rule {
	var rs []rule
	if cfg.AcceptLoopback {
		switch h {
		case nf.HookInput:
			rs = append(rs, rule{RuleLoopback, []stmt{ifIndex{key: expr.MetaKeyIIF, index: loopbackIfindex}, verdict(expr.VerdictAccept)}})
		case nf.HookOutput:
			rs = append(rs, rule{RuleLoopback, []stmt{ifIndex{key: expr.MetaKeyOIF, index: loopbackIfindex}, verdict(expr.VerdictAccept)}})
		}
	}
	if cfg.AcceptICMPv6ND {
		rs = append(rs, rule{RuleICMPv6ND, []stmt{l4proto(unix.IPPROTO_ICMPV6), icmpv6TypeRange{icmpv6NDFirst, icmpv6NDLast}, verdict(expr.VerdictAccept)}})
	}
	return rs
}

// queueStmt is the statement of every rule that queues to userspace.
func (cfg Config) queueStmt(kind QueueKind) queueStmt {
	return queueStmt{kind: kind, base: cfg.QueueBase, total: cfg.queues(), bypass: cfg.Bypass, fanout: cfg.CPUFanout && cfg.queues() > 1}
}

// policyLayout is hook h's compiled policy, its main chain named mainName
// (zero without a plan).
func policyLayout(cfg Config, h nf.Hook, kind QueueKind, mainName string) chainLayout {
	if cfg.Plan == nil {
		return chainLayout{}
	}
	return cfg.Plan.layout(h, cfg.queueStmt(kind), mainName)
}

// addLayout buffers the block chains and the main chain of a layout, the
// chains before any rule that jumps to them.
func addLayout(c *nftables.Conn, t *nftables.Table, mainName string, l chainLayout) (main *nftables.Chain, blocks []*nftables.Chain, err error) {
	for _, b := range l.blocks {
		blocks = append(blocks, c.AddChain(&nftables.Chain{Name: b.name, Table: t}))
	}
	main = c.AddChain(&nftables.Chain{Name: mainName, Table: t})
	for i, b := range l.blocks {
		for _, r := range b.rules {
			if err := r.add(c, t, blocks[i]); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, r := range l.main {
		if err := r.add(c, t, main); err != nil {
			return nil, nil, err
		}
	}
	return main, blocks, nil
}

// add buffers r on c, creating the anonymous sets its lookups need first,
// in the same batch.
func (r rule) add(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain) error {
	// Checked before anything is buffered, so that an error leaves the
	// batch as it was (a set's name adds a few bytes to its lookup).
	if err := checkRuleBytes(r.name, r.exprs()); err != nil {
		return err
	}
	var exprs []expr.Any
	for _, s := range r.stmts {
		if ss, ok := s.(setStmt); ok {
			e, err := ss.setExprs(c, t)
			if err != nil {
				return err
			}
			exprs = append(exprs, e...)
			continue
		}
		exprs = append(exprs, s.exprs()...)
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs, UserData: r.userData()})
	return nil
}

// Indexes into offloadRules' result.
const (
	offOrig = iota
	offReply
	offStale
	offSet
	offSetReply
	numOffloadRules
)

// offloadRules are the rules of hook h's chain that carry the policy
// generation; they are the only rules SetGeneration rewrites.
//
// A decision offloads only the hook and direction it was made for: the
// offload-set rules of chain h set the conntrack mark bit of (h, direction
// of the packet as the kernel's conntrack sees it), and the offload rules
// of chain h accept only packets whose own (h, direction) bit is set. So an
// output default that accepts a SYN-ACK never lets the client's data skip
// the input rules, and an accept of one direction of a forwarded flow never
// accepts the other (#13).
//
// The conntrack mark holds one generation for all six bits. offload-stale
// clears the agent's bits of a flow that was offloaded under an older
// generation as soon as one of its packets is queued, so that a flow the
// new policy decides at one hook does not inherit another hook's old bits,
// and a flow the new policy drops does not come back once the generation
// wraps. The offload rules skip packets conntrack calls related (ICMP errors
// quoting an offloaded flow carry that flow's mark): the policy decides
// those.
func offloadRules(cfg Config, h nf.Hook) []rule {
	m := cfg.Marks
	gen := m.ConnGen(cfg.generation())
	req := m.OffloadRequest(cfg.generation())
	liveStates := ctState{bit: expr.CtStateBitNEW | expr.CtStateBitESTABLISHED, name: "new,established"}
	match := func(name string, reply bool) rule {
		bit := m.OffloadBit(h, reply)
		return rule{name, []stmt{
			maskedCmp{key: keyCt, mask: bit | m.GenMask(), value: bit | gen},
			ctDirection(reply),
			liveStates,
			verdict(expr.VerdictAccept),
		}}
	}
	set := func(name string, reply bool) rule {
		bit := m.OffloadBit(h, reply)
		return rule{name, []stmt{
			maskedCmp{key: keyMeta, mask: m.ActionMask() | m.IDMask(), value: req},
			ctDirection(reply),
			ctMarkSet{keep: ^(bit | m.GenMask()), set: bit | gen},
			markSet{keep: ^m.Mask},
			verdict(expr.VerdictAccept),
		}}
	}
	rs := make([]rule, numOffloadRules)
	rs[offOrig] = match(RuleOffload, false)
	rs[offReply] = match(RuleOffloadReply, true)
	rs[offStale] = rule{RuleOffloadStale, []stmt{
		maskedCmp{key: keyCt, mask: m.OffloadBits(), value: 0, op: expr.CmpOpNeq},
		maskedCmp{key: keyCt, mask: m.GenMask(), value: gen, op: expr.CmpOpNeq},
		ctMarkSet{keep: ^m.Mask},
	}}
	rs[offSet] = set(RuleOffloadSet, false)
	rs[offSetReply] = set(RuleOffloadSetRep, true)
	return rs
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

type markKey int

const (
	keyMeta markKey = iota // meta mark, the packet mark
	keyCt                  // ct mark, the conntrack mark
)

func (k markKey) load() expr.Any {
	if k == keyCt {
		return &expr.Ct{Register: 1, Key: expr.CtKeyMARK}
	}
	return &expr.Meta{Register: 1, Key: expr.MetaKeyMARK}
}

func (k markKey) store() expr.Any {
	if k == keyCt {
		return &expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyMARK}
	}
	return &expr.Meta{Register: 1, SourceRegister: true, Key: expr.MetaKeyMARK}
}

func (k markKey) String() string {
	if k == keyCt {
		return "ct mark"
	}
	return "meta mark"
}

// maskedCmp is `<key> & mask == value`, or != with op CmpOpNeq.
type maskedCmp struct {
	key         markKey
	mask, value uint32
	op          expr.CmpOp // CmpOpEq (the zero value) or CmpOpNeq
}

func (s maskedCmp) exprs() []expr.Any {
	out := []expr.Any{s.key.load()}
	if s.mask != ^uint32(0) {
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: u32(s.mask), Xor: u32(0)})
	}
	return append(out, &expr.Cmp{Op: s.op, Register: 1, Data: u32(s.value)})
}

func (s maskedCmp) text() string {
	op := "=="
	if s.op == expr.CmpOpNeq {
		op = "!="
	}
	if s.mask == ^uint32(0) {
		if s.op == expr.CmpOpNeq {
			return fmt.Sprintf("%s != 0x%08x", s.key, s.value)
		}
		return fmt.Sprintf("%s 0x%08x", s.key, s.value)
	}
	return fmt.Sprintf("%s & 0x%08x %s 0x%08x", s.key, s.mask, op, s.value)
}

// markSet is `meta mark set meta mark & keep | set`.
type markSet struct{ keep, set uint32 }

func (s markSet) exprs() []expr.Any { return bitwiseSet(keyMeta, s.keep, s.set) }
func (s markSet) text() string      { return bitwiseSetText(keyMeta, s.keep, s.set) }

// ctMarkSet is `ct mark set ct mark & keep | set`.
type ctMarkSet struct{ keep, set uint32 }

func (s ctMarkSet) exprs() []expr.Any { return bitwiseSet(keyCt, s.keep, s.set) }
func (s ctMarkSet) text() string      { return bitwiseSetText(keyCt, s.keep, s.set) }

// bitwiseSet loads the mark k, keeps the bits of keep, sets those of set
// and stores it back.
func bitwiseSet(k markKey, keep, set uint32) []expr.Any {
	return []expr.Any{
		k.load(),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: u32(keep), Xor: u32(set)},
		k.store(),
	}
}

// bitwiseSetText writes a read-modify-write of a mark the way nft parses it
// into exactly one bitwise expression. The bits in set are always inside
// ^keep, so the kernel's (x & keep) ^ set is x & keep | set.
func bitwiseSetText(k markKey, keep, set uint32) string {
	switch {
	case set == 0:
		return fmt.Sprintf("%s set %s & 0x%08x", k, k, keep)
	case keep == ^set:
		return fmt.Sprintf("%s set %s | 0x%08x", k, k, set)
	}
	return fmt.Sprintf("%s set %s & 0x%08x | 0x%08x", k, k, keep, set)
}

type l4proto uint8

func (p l4proto) exprs() []expr.Any { return metaEq(expr.MetaKeyL4PROTO, []byte{byte(p)}) }

func (p l4proto) text() string {
	switch p {
	case unix.IPPROTO_TCP:
		return "meta l4proto tcp"
	case unix.IPPROTO_UDP:
		return "meta l4proto udp"
	case unix.IPPROTO_ICMP:
		return "meta l4proto icmp"
	case unix.IPPROTO_ICMPV6:
		return "meta l4proto ipv6-icmp"
	case unix.IPPROTO_SCTP:
		return "meta l4proto sctp"
	}
	return fmt.Sprintf("meta l4proto %d", uint8(p))
}

// icmpv6TypeRange matches the ICMPv6 type; it must follow l4proto(ICMPv6).
type icmpv6TypeRange struct{ first, last uint8 }

func (s icmpv6TypeRange) exprs() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: []byte{s.first}},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: []byte{s.last}},
	}
}

func (s icmpv6TypeRange) text() string { return fmt.Sprintf("icmpv6 type %d-%d", s.first, s.last) }

// ifIndex is `iif lo` / `oif lo`; nft resolves the name to the index at load.
type ifIndex struct {
	key   expr.MetaKey
	index uint32
}

func (s ifIndex) exprs() []expr.Any { return metaEq(s.key, u32(s.index)) }

func (s ifIndex) text() string {
	name := "iif"
	if s.key == expr.MetaKeyOIF {
		name = "oif"
	}
	if s.index == loopbackIfindex {
		return name + " lo"
	}
	return fmt.Sprintf("%s %d", name, s.index)
}

// ctState matches conntrack state bits (any of them).
type ctState struct {
	bit  uint32
	name string // nft's names, comma-separated
	// not: none of the states (`ct state ! related`).
	not bool
}

func (c ctState) exprs() []expr.Any {
	op := expr.CmpOpNeq
	if c.not {
		op = expr.CmpOpEq
	}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: u32(c.bit), Xor: u32(0)},
		&expr.Cmp{Op: op, Register: 1, Data: u32(0)},
	}
}

func (c ctState) text() string {
	if c.not {
		return "ct state ! " + c.name
	}
	return "ct state " + c.name
}

// ctDirection is `ct direction original` or `ct direction reply`.
type ctDirection bool

func (d ctDirection) exprs() []expr.Any {
	var v byte // IP_CT_DIR_ORIGINAL
	if d {
		v = 1 // IP_CT_DIR_REPLY
	}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{v}},
	}
}

func (d ctDirection) text() string {
	if d {
		return "ct direction reply"
	}
	return "ct direction original"
}

type logStmt struct {
	prefix string
	group  uint16
}

func (s logStmt) exprs() []expr.Any {
	return []expr.Any{&expr.Log{
		Key:   1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX,
		Group: s.group,
		Data:  []byte(s.prefix),
	}}
}

func (s logStmt) text() string { return fmt.Sprintf("log prefix %q group %d", s.prefix, s.group) }

type rejectTCP struct{}

func (rejectTCP) exprs() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
}

func (rejectTCP) text() string { return "reject with tcp reset" }

type rejectICMPX struct{}

func (rejectICMPX) exprs() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}}
}

func (rejectICMPX) text() string { return "reject with icmpx port-unreachable" }

type verdict expr.VerdictKind

func (v verdict) exprs() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictKind(v)}} }

func (v verdict) text() string {
	switch expr.VerdictKind(v) {
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	}
	return "accept"
}

// queueStmt hands the packet to queues base..base+total-1.
type queueStmt struct {
	kind           QueueKind
	base, total    uint16
	bypass, fanout bool
}

func (s queueStmt) exprs() []expr.Any {
	if s.kind == QueueXT {
		return []expr.Any{&expr.Target{Name: "NFQUEUE", Rev: xtNFQueueRevision, Info: s.xtInfo()}}
	}
	var flags expr.QueueFlag
	if s.bypass {
		flags |= expr.QueueFlagBypass
	}
	if s.fanout {
		flags |= expr.QueueFlagFanout
	}
	return []expr.Any{&expr.Queue{Num: s.base, Total: s.total, Flag: flags}}
}

// xtInfo is struct xt_NFQ_info_v3 {__u16 queuenum, queues_total, flags} in
// host byte order, padded to 8 bytes because xtables payloads are
// XT_ALIGN'ed.
func (s queueStmt) xtInfo() *xt.Unknown {
	var flags uint16
	if s.bypass {
		flags |= xtNFQFlagBypass
	}
	if s.fanout {
		flags |= xtNFQFlagFanout
	}
	b := make([]byte, 0, 8)
	b = binary.NativeEndian.AppendUint16(b, s.base)
	b = binary.NativeEndian.AppendUint16(b, s.total)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = append(b, 0, 0)
	info := xt.Unknown(b)
	return &info
}

// text is the native statement. nft syntax cannot express the xt target, so
// Render writes the xt rule as a comment holding this equivalent.
func (s queueStmt) text() string {
	var flags []string
	if s.bypass {
		flags = append(flags, "bypass")
	}
	if s.fanout {
		flags = append(flags, "fanout")
	}
	t := "queue"
	if len(flags) > 0 {
		t += " flags " + strings.Join(flags, ",")
	}
	if s.total > 1 {
		return fmt.Sprintf("%s to %d-%d", t, s.base, s.base+s.total-1)
	}
	return fmt.Sprintf("%s to %d", t, s.base)
}
