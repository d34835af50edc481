package policies

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"net/netip"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/ratelimit"
)

// Decide evaluates the program on one packet. It allocates nothing, takes
// no lock (bar a limit's bucket) and costs about the same whatever the
// number of rules: see the package comment.
//
// Cacheable speaks for later packets of the same flow in the same
// direction, seen at the same hook in the same state; Offload for every
// later packet of the flow's conntrack entry in the same direction at the
// same hook, whatever its state: a decision that a state change could undo
// (the deciding rule's state match, or an earlier rule skipped only for its
// state) does not offload (#13).
func (p *Program) Decide(in *Input) Decision {
	pkt := in.Pkt
	h := in.Hook
	in.cgroupState = 0
	if h >= nf.NumHooks || pkt == nil {
		return Decision{Action: ActionDrop, Rule: NoRule}
	}
	fs := famSlotOther
	switch pkt.Family {
	case packet.IPv4:
		fs = famSlot4
	case packet.IPv6:
		fs = famSlot6
	}
	f0 := p.meta[(int(h)*famSlots+fs)*p.nclass+int(p.protoClass[pkt.Proto])]
	f1 := p.src.lookup(pkt.Src, p.allPair)
	f2 := p.dst.lookup(pkt.Dst, p.allPair)
	f3, f4 := p.sport.noPort, p.dport.noPort
	if pkt.HasL4 && !pkt.NonFirstFragment && HasPorts(pkt.Proto) {
		if p.sport.table != nil {
			f3 = p.sport.table[pkt.SrcPort]
		}
		if p.dport.table != nil {
			f4 = p.dport.table[pkt.DstPort]
		}
	}

	// Full bitsets (upper halves) are ANDed; primary ones (lower halves)
	// ORed, and only words where some primary bit survives are visited.
	w, sw := p.words, p.sumw
	a0, a1, a2, a3, a4 := int(f0>>32)*w, int(f1>>32)*w, int(f2>>32)*w, int(f3>>32)*w, int(f4>>32)*w
	o0, o1, o2, o3, o4 := int(uint32(f0))*w, int(uint32(f1))*w, int(uint32(f2))*w, int(uint32(f3))*w, int(uint32(f4))*w
	q0, q1, q2, q3, q4 := int(uint32(f0))*sw, int(uint32(f1))*sw, int(uint32(f2))*sw, int(uint32(f3))*sw, int(uint32(f4))*sw
	r0, r1, r2, r3, r4 := int(f0>>32)*sw, int(f1>>32)*sw, int(f2>>32)*sw, int(f3>>32)*sw, int(f4>>32)*sw
	bs, ss := p.bits, p.sums
	var taint uint8
	for i := 0; i < sw; i++ {
		sum := (ss[q0+i] | ss[q1+i] | ss[q2+i] | ss[q3+i] | ss[q4+i]) &
			ss[r0+i] & ss[r1+i] & ss[r2+i] & ss[r3+i] & ss[r4+i]
		for sum != 0 {
			wi := i*64 + bits.TrailingZeros64(sum)
			sum &= sum - 1
			word := (bs[o0+wi] | bs[o1+wi] | bs[o2+wi] | bs[o3+wi] | bs[o4+wi]) &
				bs[a0+wi] & bs[a1+wi] & bs[a2+wi] & bs[a3+wi] & bs[a4+wi]
			for word != 0 {
				r := wi*64 + bits.TrailingZeros64(word)
				word &= word - 1
				e := &p.rules[r]
				if e.checks != 0 {
					ok, t := p.check(e, in)
					taint |= t
					if !ok {
						if t&taintPending != 0 {
							return pendingDecision(r)
						}
						continue
					}
				}
				return p.ruleDecision(r, e, in, taint)
			}
		}
	}
	a := p.defaults[h]
	return Decision{
		Action:    a,
		Rule:      NoRule,
		Log:       p.defaultLog && a != ActionAccept,
		Audit:     p.audit && a != ActionAccept,
		Offload:   a == ActionAccept && taint == 0 && laterStates[in.State&3] != 0,
		Cacheable: taint&taintPacket == 0,
	}
}

func (a *addrIndex) lookup(addr netip.Addr, allPair uint64) uint64 {
	if !a.enabled {
		return allPair
	}
	if !addr.IsValid() {
		return a.none
	}
	if id, ok := a.table.Lookup(addr); ok {
		return id
	}
	return a.none
}

func (p *Program) ruleDecision(r int, e *ruleExec, in *Input, taint uint8) Decision {
	d := Decision{
		Action:  e.action,
		Rule:    int32(r),
		Log:     e.log,
		Audit:   e.audit,
		SetMark: e.setMark,
		Mark:    e.mark,
		Offload: e.offload && taint == 0 && in != nil && holdsLater(e, in.State),
	}
	// The caller reuses a cached decision only for packets in the same
	// state, so neither this rule's state match nor a state match that
	// skipped an earlier rule can come out differently.
	d.Cacheable = taint&taintPacket == 0 && e.stable
	return d
}

// holdsLater reports whether e, which matched a packet in state st, matches
// every later state of the packet's conntrack entry that offload would
// accept (an `accept` of `state: new` must not offload the established rest
// of the flow).
func holdsLater(e *ruleExec, st nf.State) bool {
	later := laterStates[st&3]
	if later == 0 {
		return false
	}
	return e.checks&chkState == 0 || e.states&later == later
}

// check tests a candidate's rare fields, cheapest and flow-fixed first, the
// limit last so that only packets that match otherwise take a token. The
// taint says whether a later packet of the flow might still match.
func (p *Program) check(e *ruleExec, in *Input) (bool, uint8) {
	pkt := in.Pkt
	if e.checks&chkIface != 0 {
		if len(e.iif) > 0 && !anyGlob(e.iif, in.InIf) || len(e.oif) > 0 && !anyGlob(e.oif, in.OutIf) {
			return false, 0
		}
	}
	if e.checks&chkOwner != 0 {
		if ok, t := p.checkOwner(e, in); !ok {
			return false, t
		}
	}
	if e.checks&chkState != 0 && e.states&(1<<(in.State&3)) == 0 {
		switch {
		case e.checks&chkPacket != 0:
			return false, taintPacket
		case e.states&laterStates[in.State&3] != 0:
			if e.quietOffload {
				// A later packet in the state e wants would be accepted
				// and offloaded by e: what offloading now does to it.
				return false, 0
			}
			return false, taintState
		}
		return false, 0
	}
	if e.checks&chkPacket == 0 {
		return true, 0
	}
	switch p.checkPacket(e, in, pkt) {
	case l7No:
		return false, taintPacket
	case l7Pending:
		return false, taintPacket | taintPending
	}
	return true, 0
}

// pendingDecision accepts a packet whose stream has not reached the bytes
// that decide rule r yet (docs/policy.md, "While the bytes are pending": a
// flow whose first packets carry no decisive payload is accepted packet by
// packet until the payload decides).
// An earlier rule that matched has already decided; a later one does not get
// to, or the handshake of every flow the rule would accept would meet the
// catch-all reject below it.
func pendingDecision(r int) Decision {
	return Decision{Action: ActionAccept, Rule: int32(r), Pending: true}
}

func (p *Program) checkPacket(e *ruleExec, in *Input, pkt *packet.Packet) l7Result {
	l4 := pkt.HasL4 && !pkt.NonFirstFragment
	if e.hasTCP && (!l4 || pkt.Proto != packet.ProtoTCP || pkt.TCPFlags&e.tcpMask != e.tcpWant) {
		return l7No
	}
	if e.hasICMP {
		if !l4 {
			return l7No
		}
		var set *[4]uint64
		switch pkt.Proto {
		case packet.ProtoICMP:
			set = e.icmp4
		case packet.ProtoICMPv6:
			set = e.icmp6
		}
		if set == nil || set[pkt.ICMPType/64]&(1<<(pkt.ICMPType%64)) == 0 {
			return l7No
		}
	}
	if len(e.lengths) > 0 {
		ok := false
		for _, r := range e.lengths {
			if pkt.Length >= r.Lo && pkt.Length <= r.Hi {
				ok = true
				break
			}
		}
		if !ok {
			return l7No
		}
	}
	if e.payload != nil && (!l4 || !e.payload.Match(pkt.Payload)) {
		return l7No
	}
	// At most one of the name fields: the loader refuses two.
	var name l7Result
	switch {
	case e.dns != nil:
		name = matchDNS(e, in, pkt, l4)
	case e.sni != nil:
		name = matchSNI(e, in, pkt, l4)
	case e.http != nil:
		name = matchHTTP(e, in, pkt, l4)
	default:
		name = l7Yes
	}
	if name != l7Yes {
		return name
	}
	if e.limit != nil {
		return yesNo(p.allow(e, in, pkt))
	}
	return l7Yes
}

// allow takes a token from the rule's bucket for this packet's key. Without
// over, the rule matches while tokens last; with over, once they run out.
func (p *Program) allow(e *ruleExec, in *Input, pkt *packet.Packet) bool {
	var ok bool
	if e.bucket != nil {
		ok = e.bucket.Allow(in.Now)
	} else {
		ok = e.table.Allow(p.limitKey(e.limit.Per, pkt), in.Now)
	}
	return ok != e.limit.Over
}

// limitKey fills a bucket key: an address for per src or dst; for per flow
// the IPv4 5-tuple itself, or two independent hashes of the IPv6 one.
func (p *Program) limitKey(per LimitPer, pkt *packet.Packet) ratelimit.Key {
	var k ratelimit.Key
	switch per {
	case LimitSrc:
		a := pkt.Src.As16()
		copy(k[:16], a[:])
		k[16] = byte(pkt.Family)
	case LimitDst:
		a := pkt.Dst.As16()
		copy(k[:16], a[:])
		k[16] = byte(pkt.Family)
	case LimitFlow:
		if pkt.Src.Is4() && pkt.Dst.Is4() {
			s, d := pkt.Src.As4(), pkt.Dst.As4()
			putFlow(k[:], s[:], d[:], pkt)
			k[19] = 4
			return k
		}
		var t [37]byte
		s, d := pkt.Src.As16(), pkt.Dst.As16()
		putFlow(t[:], s[:], d[:], pkt)
		binary.LittleEndian.PutUint64(k[0:8], maphash.Bytes(p.seeds[0], t[:]))
		binary.LittleEndian.PutUint64(k[8:16], maphash.Bytes(p.seeds[1], t[:]))
		k[19] = 6
	}
	return k
}

// putFlow writes a flow's 5-tuple at the start of b: src, dst (4 or 16
// bytes each), source and destination port, protocol.
func putFlow(b, src, dst []byte, pkt *packet.Packet) {
	n := copy(b, src)
	n += copy(b[n:], dst)
	binary.BigEndian.PutUint16(b[n:], pkt.SrcPort)
	binary.BigEndian.PutUint16(b[n+2:], pkt.DstPort)
	b[n+4] = pkt.Proto
}

func anyGlob(patterns []string, name string) bool {
	for _, p := range patterns {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// globMatch matches name against a pattern where '*' stands for any run of
// characters, without allocating.
func globMatch(pattern, name string) bool {
	px, nx := 0, 0
	starP, starN := -1, 0
	for nx < len(name) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			starP, starN = px, nx
			px++
		case px < len(pattern) && pattern[px] == name[nx]:
			px++
			nx++
		case starP >= 0:
			starN++
			px, nx = starP+1, starN
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
