package rules

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The match statements of compiled policy rules. Each is one nft match,
// written both as netlink expressions and as nft syntax that parses back
// into the same expressions (TestCompiledRenderLoads checks the syntax).

// setStmt is a statement that needs an anonymous set in the same batch.
// Install creates the set first, then asks for the expressions that look it
// up; exprs() alone (for tests that only compare shapes) uses a set with no
// ID.
type setStmt interface {
	stmt
	setExprs(c *nftables.Conn, t *nftables.Table) ([]expr.Any, error)
}

// nfproto is `meta nfproto ipv4|ipv6`.
type nfproto uint8

func (f nfproto) exprs() []expr.Any { return metaEq(expr.MetaKeyNFPROTO, []byte{byte(f)}) }

// metaEq is `meta KEY == data`.
func metaEq(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Register: 1, Key: key},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

func (f nfproto) text() string {
	if f == unix.NFPROTO_IPV6 {
		return "meta nfproto ipv6"
	}
	return "meta nfproto ipv4"
}

// payloadField is a header field the compiled rules read.
type payloadField struct {
	base   expr.PayloadBase
	offset uint32
	len    uint32
	name   string // nft syntax, e.g. "ip saddr"
}

var (
	fieldIPSaddr  = payloadField{expr.PayloadBaseNetworkHeader, 12, 4, "ip saddr"}
	fieldIPDaddr  = payloadField{expr.PayloadBaseNetworkHeader, 16, 4, "ip daddr"}
	fieldIP6Saddr = payloadField{expr.PayloadBaseNetworkHeader, 8, 16, "ip6 saddr"}
	fieldIP6Daddr = payloadField{expr.PayloadBaseNetworkHeader, 24, 16, "ip6 daddr"}
	fieldSport    = payloadField{expr.PayloadBaseTransportHeader, 0, 2, "th sport"}
	fieldDport    = payloadField{expr.PayloadBaseTransportHeader, 2, 2, "th dport"}
	fieldTCPFlags = payloadField{expr.PayloadBaseTransportHeader, 13, 1, "tcp flags"}
	fieldICMPType = payloadField{expr.PayloadBaseTransportHeader, 0, 1, "icmp type"}
	fieldICMP6    = payloadField{expr.PayloadBaseTransportHeader, 0, 1, "icmpv6 type"}
)

func (f payloadField) load() expr.Any {
	return &expr.Payload{DestRegister: 1, Base: f.base, Offset: f.offset, Len: f.len}
}

// prefixMatch is `ip saddr 10.0.0.0/8` or its negation `!=`.
type prefixMatch struct {
	field payloadField
	pfx   netip.Prefix
	neg   bool
}

func (s prefixMatch) exprs() []expr.Any {
	addr := s.pfx.Addr().AsSlice()
	out := []expr.Any{s.field.load()}
	if bits := s.pfx.Bits(); bits < s.pfx.Addr().BitLen() {
		mask := make([]byte, len(addr))
		for i := 0; i < bits; i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: s.field.len, Mask: mask, Xor: make([]byte, len(addr))})
	}
	op := expr.CmpOpEq
	if s.neg {
		op = expr.CmpOpNeq
	}
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: addr})
}

func (s prefixMatch) text() string {
	op := ""
	if s.neg {
		op = "!= "
	}
	p := s.pfx.String()
	if s.pfx.IsSingleIP() {
		p = s.pfx.Addr().String()
	}
	return fmt.Sprintf("%s %s%s", s.field.name, op, p)
}

// rangeMatch is `th dport 80`, `th dport 1000-2000`, `tcp flags & 0x12 ==
// 0x02`-free plain values: a big-endian field compared with one value or an
// inclusive range, or (neg) its complement.
type rangeMatch struct {
	field  payloadField
	lo, hi []byte // big-endian, len(field)
	neg    bool
	// hton converts a host-order register (meta len) before comparing:
	// the kernel's cmp and range compare bytes, so order matters.
	hton bool
	// loadExpr replaces the payload load (meta len).
	loadExpr expr.Any
	loadText string
	// show writes a value for text() (nil: as a number).
	show func([]byte) string
}

func (s rangeMatch) exprs() []expr.Any {
	var out []expr.Any
	if s.loadExpr != nil {
		out = append(out, s.loadExpr)
	} else {
		out = append(out, s.field.load())
	}
	if s.hton {
		out = append(out, &expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: uint32(len(s.lo)), Size: uint32(len(s.lo))})
	}
	switch {
	case bytes.Equal(s.lo, s.hi) && !s.neg:
		out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: s.lo})
	case bytes.Equal(s.lo, s.hi):
		out = append(out, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: s.lo})
	case s.neg:
		out = append(out, &expr.Range{Op: expr.CmpOpNeq, Register: 1, FromData: s.lo, ToData: s.hi})
	default:
		out = append(out, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: s.lo, ToData: s.hi})
	}
	return out
}

func (s rangeMatch) text() string {
	name := s.field.name
	if s.loadText != "" {
		name = s.loadText
	}
	op := ""
	if s.neg {
		op = "!= "
	}
	show := s.show
	if show == nil {
		show = beText
	}
	v := show(s.lo)
	if !bytes.Equal(s.lo, s.hi) {
		v += "-" + show(s.hi)
	}
	return fmt.Sprintf("%s %s%s", name, op, v)
}

func beText(b []byte) string {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return fmt.Sprint(v)
}

func bigEndian16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func bigEndian32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// metaLen is `meta len`, the length of the packet from its network header:
// the IP packet length the policy's `length` means.
func metaLenMatch(lo, hi int) rangeMatch {
	return rangeMatch{
		lo: bigEndian32(uint32(lo)), hi: bigEndian32(uint32(hi)), hton: true,
		loadExpr: &expr.Meta{Register: 1, Key: expr.MetaKeyLEN}, loadText: "meta length",
	}
}

// maskMatch is `tcp flags & mask == want`, or with neq `!=`; show, when
// set, is how nft writes it (a field nft itself reads masked, as `ip
// hdrlength != 5`).
type maskMatch struct {
	field      payloadField
	mask, want uint8
	neq        bool
	show       string
}

func (s maskMatch) exprs() []expr.Any {
	op := expr.CmpOpEq
	if s.neq {
		op = expr.CmpOpNeq
	}
	return append(maskedLoad(s.field, s.mask), &expr.Cmp{Op: op, Register: 1, Data: []byte{s.want}})
}

// maskedLoad loads a one-byte field into register 1, masked.
func maskedLoad(f payloadField, mask uint8) []expr.Any {
	return []expr.Any{
		f.load(),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
	}
}

func (s maskMatch) text() string {
	if s.show != "" {
		return s.show
	}
	return fmt.Sprintf("%s & 0x%02x == 0x%02x", s.field.name, s.mask, s.want)
}

// ifnameMatch is `iifname "eth0"` (the whole name) or `iifname "eth*"` (a
// prefix: the kernel compares only the bytes given, which is what nft's
// trailing-* wildcard compiles to).
type ifnameMatch struct {
	out    bool
	name   string
	prefix bool
}

func (s ifnameMatch) exprs() []expr.Any {
	key := expr.MetaKeyIIFNAME
	if s.out {
		key = expr.MetaKeyOIFNAME
	}
	data := []byte(s.name)
	if !s.prefix {
		data = make([]byte, unix.IFNAMSIZ)
		copy(data, s.name)
	}
	return metaEq(key, data)
}

func (s ifnameMatch) text() string {
	k := "iifname"
	if s.out {
		k = "oifname"
	}
	n := s.name
	if s.prefix {
		n += "*"
	}
	return fmt.Sprintf("%s %q", k, n)
}

// counterStmt is `counter`: per-rule packet and byte counts, read at scrape
// time for fwagent_rule_hits_total.
type counterStmt struct{}

func (counterStmt) exprs() []expr.Any { return []expr.Any{&expr.Counter{}} }
func (counterStmt) text() string      { return "counter" }

// counterRef is `counter name "OBJ"`: the rule counts into a named counter
// object of the table.
type counterRef string

func (c counterRef) exprs() []expr.Any {
	return []expr.Any{&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: string(c)}}
}
func (c counterRef) text() string { return fmt.Sprintf("counter name %q", string(c)) }

// jumpStmt is `jump CHAIN`.
type jumpStmt string

func (j jumpStmt) exprs() []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: string(j)}}
}
func (j jumpStmt) text() string { return "jump " + string(j) }

// setMatch is a lookup in an anonymous set: `ip saddr { 10.0.0.0/8,
// 192.168.0.0-192.168.0.255 }`, `th dport != { 22, 80-90 }`, `meta l4proto
// { 6, 17 }`. Interval sets hold merged, sorted, non-overlapping ranges, as
// the kernel requires.
type setMatch struct {
	load     expr.Any
	loadText string
	keyType  nftables.SetDatatype
	interval bool
	// ranges are inclusive [lo, hi] pairs of big-endian keys (lo == hi for
	// plain sets), sorted and disjoint.
	ranges [][2][]byte
	neg    bool
	// show writes one key for text().
	show func([]byte) string
}

func (s setMatch) elements() []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range s.ranges {
		out = append(out, nftables.SetElement{Key: r[0]})
		if !s.interval {
			continue
		}
		end, overflow := increment(r[1])
		if !overflow {
			// The range ends where the next key starts; a range to the top
			// of the key space has no end element.
			out = append(out, nftables.SetElement{Key: end, IntervalEnd: true})
		}
	}
	return out
}

// increment returns b+1 as a big-endian number of the same length.
func increment(b []byte) ([]byte, bool) {
	out := bytes.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, false
		}
	}
	return out, true
}

func (s setMatch) lookup(set *nftables.Set) []expr.Any {
	l := &expr.Lookup{SourceRegister: 1, Invert: s.neg}
	if set != nil {
		l.SetName, l.SetID = set.Name, set.ID
	}
	return []expr.Any{s.load, l}
}

func (s setMatch) exprs() []expr.Any { return s.lookup(nil) }

func (s setMatch) setExprs(c *nftables.Conn, t *nftables.Table) ([]expr.Any, error) {
	set := &nftables.Set{
		Table: t, Anonymous: true, Constant: true, Interval: s.interval,
		KeyType: s.keyType,
	}
	if err := addSet(c, set, s.elements()); err != nil {
		return nil, fmt.Errorf("rules: add set for %s: %w", s.loadText, err)
	}
	return s.lookup(set), nil
}

func (s setMatch) text() string {
	var parts []string
	for _, r := range s.ranges {
		if bytes.Equal(r[0], r[1]) {
			parts = append(parts, s.show(r[0]))
		} else {
			parts = append(parts, s.show(r[0])+"-"+s.show(r[1]))
		}
	}
	op := ""
	if s.neg {
		op = "!= "
	}
	return fmt.Sprintf("%s %s{ %s }", s.loadText, op, strings.Join(parts, ", "))
}

func showAddr(b []byte) string {
	a, _ := netip.AddrFromSlice(b)
	return a.String()
}

// mergeRanges sorts inclusive big-endian ranges and merges overlapping and
// adjacent ones.
func mergeRanges(rs [][2][]byte) [][2][]byte {
	sorted := make([][2][]byte, len(rs))
	copy(sorted, rs)
	for i := 1; i < len(sorted); i++ { // few entries: insertion sort keeps it simple
		for j := i; j > 0 && bytes.Compare(sorted[j][0], sorted[j-1][0]) < 0; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	var out [][2][]byte
	for _, r := range sorted {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next, overflow := increment(last[1])
			if overflow || bytes.Compare(r[0], next) <= 0 {
				if bytes.Compare(r[1], last[1]) > 0 {
					last[1] = r[1]
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// prefixRange is the first and last address of p.
func prefixRange(p netip.Prefix) [2][]byte {
	lo := p.Masked().Addr().AsSlice()
	hi := bytes.Clone(lo)
	for i := p.Bits(); i < len(hi)*8; i++ {
		hi[i/8] |= 0x80 >> (i % 8)
	}
	return [2][]byte{lo, hi}
}
