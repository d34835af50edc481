package policies

import (
	"net/netip"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// Policy is a loaded and validated policy file: what the user wrote, with
// sets resolved, before compilation.
type Policy struct {
	// File is the name the policy was loaded under; errors and warnings
	// carry it.
	File string
	// Audit is mode: audit: every decision is made and logged, but every
	// packet is accepted.
	Audit bool
	// Default is the verdict per hook when no rule matches (without
	// default:, input and forward drop and output accepts); DefaultLog asks
	// for such drops and rejects to be logged.
	Default    [nf.NumHooks]Action
	DefaultLog bool
	// OnError is the verdict per hook for packets that cannot be decoded.
	OnError [nf.NumHooks]Action
	// Sets are the named sets, by name without the $.
	Sets map[string]*Set
	// Rules in file order; the first match wins.
	Rules []*Rule
	// Tests are the policy's own tests, run by `fwagent check`.
	Tests []*Test
	// Warnings are FILE:LINE:COL: warning: ... lines about things that are
	// legal but probably not meant (shadowed rules, unused sets).
	Warnings []string
	// EvalWarnings are FILE:LINE:COL: warning: ... lines about rules that
	// can never match a packet read from a capture (uid, gid, cgroup: a
	// capture carries no socket owner). They are not Warnings because such
	// rules are right for the live agent; check and eval print them.
	EvalWarnings []string
}

// SetKind is what a named set holds, inferred from its entries.
type SetKind uint8

const (
	SetEmpty SetKind = iota
	SetAddr
	SetPort
	SetName
)

func (k SetKind) String() string {
	switch k {
	case SetAddr:
		return "address"
	case SetPort:
		return "port"
	case SetName:
		return "name"
	}
	return "empty"
}

// Set is a named set of addresses, ports or names.
type Set struct {
	Name     string
	Kind     SetKind
	Prefixes []netip.Prefix
	Ports    []PortRange
	Names    []string
	// At is where the set is defined.
	At Position
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

// AddrMatch is a src or dst match: the address matches when it is inside at
// least one of Pos (or HasPos is false: only negations were written) and
// inside none of Neg. HasPos with an empty Pos (a reference to an empty set)
// matches nothing.
type AddrMatch struct {
	HasPos   bool
	Pos, Neg []netip.Prefix
}

// Any reports whether the match constrains nothing.
func (m *AddrMatch) Any() bool { return !m.HasPos && len(m.Neg) == 0 }

// PortMatch is a sport or dport match, with the same logic as AddrMatch.
// A port match (Set) never holds for a packet without ports.
type PortMatch struct {
	Set      bool
	HasPos   bool
	Pos, Neg []PortRange
}

// HasPorts reports whether a protocol carries ports the decoder extracts:
// the protocols a port match can hold for.
func HasPorts(p uint8) bool {
	return p == packet.ProtoTCP || p == packet.ProtoUDP || p == packet.ProtoSCTP
}

// TCPFlags is a pf-style flags match: (flags & Mask) == Want.
type TCPFlags struct{ Want, Mask uint8 }

// LengthRange is an inclusive range of IP packet lengths.
type LengthRange struct{ Lo, Hi int }

// Payload is a byte string searched for in the transport payload, within
// [Offset, Offset+Depth) (Depth 0: to the end).
type Payload struct {
	Needle []byte
	Offset int
	Depth  int
}

// LimitPer says what a limit counts separately.
type LimitPer uint8

const (
	LimitGlobal LimitPer = iota
	LimitSrc
	LimitDst
	// LimitFlow counts each direction of a flow (its 5-tuple as seen)
	// separately.
	LimitFlow
)

// Limit is a token bucket on a rule: by default the rule matches only while
// under the rate; with Over, only once over it.
type Limit struct {
	RatePerSec float64
	Burst      int
	Per        LimitPer
	Over       bool
}

// Match is everything a rule's match names. Zero values mean "any".
type Match struct {
	// Protos lists protocol numbers; empty means any.
	Protos []uint8
	// Family is 0 (any), packet.IPv4 or packet.IPv6.
	Family   packet.Family
	Src, Dst AddrMatch
	Sport    PortMatch
	Dport    PortMatch
	// Iif and Oif are interface name patterns (a trailing or inner * glob);
	// the match holds when any pattern matches.
	Iif, Oif []string
	// States is a bitmask of 1<<nf.State; 0 means any.
	States uint8
	// TCPFlags is nil for any.
	TCPFlags *TCPFlags
	// ICMP4Types and ICMP6Types are the allowed ICMP and ICMPv6 types; a nil
	// set with HasICMPType means the rule admits no type of that version.
	HasICMPType bool
	ICMP4Types  *[4]uint64
	ICMP6Types  *[4]uint64
	Length      []LengthRange
	DNSQName    []string
	TLSSNI      []string
	HTTPHost    []string
	Payload     *Payload
	// UID and GID match the owner of the packet's local socket; Cgroup holds
	// cgroup v2 path patterns of that socket (see docs/policy.md, "Socket owner").
	UID, GID IDMatch
	Cgroup   []string
}

// Rule is one rule of a policy.
type Rule struct {
	Name string
	// Hooks is a bitmask of 1<<Hook.
	Hooks  uint8
	Action Action
	// Log asks for packets this rule decides to be logged; LogPrefix is the
	// prefix the user chose (empty: the rule name).
	Log       bool
	LogPrefix string
	Limit     *Limit
	HasMark   bool
	Mark      uint32
	// Offload is nil when the policy does not say; see the package comment.
	Offload *bool
	Audit   bool
	Match   Match

	// at is where the rule is written. It is not exported so that Rule's
	// exported fields are exactly the rule's keys: rules/ compiles each one
	// and keeps a rule with a key it does not know in userspace.
	at Position
}

// Pos is the rule's FILE:LINE:COL.
func (r *Rule) Pos() string { return r.at.String() }

// Position is where the rule is written.
func (r *Rule) Position() Position { return r.at }

// SetPosition records where the rule is written; the loader sets it.
func (r *Rule) SetPosition(p Position) { r.at = p }

// TestPacket is the packet a policy test describes.
type TestPacket struct {
	Hook     nf.Hook
	Proto    uint8
	Family   packet.Family
	Src, Dst netip.Addr
	Sport    uint16
	Dport    uint16
	Iif, Oif string
	State    nf.State
	TCPFlags uint8
	HasFlags bool
	ICMPType uint8
	Length   int
	DNSQName string
	TLSSNI   string
	HTTPHost string
	Payload  []byte
	// Owner of the local socket the packet belongs to: HasUID, HasGID and
	// Cgroup != "" say the test packet has one (policy tests only).
	HasUID, HasGID bool
	UID, GID       uint32
	Cgroup         string
}

// Test is one entry of tests:.
type Test struct {
	Packet TestPacket
	Expect Action
	// Rule is the rule expected to decide, or "" for any; ByDefault (rule:
	// default) expects no rule to match, the hook's default to decide.
	Rule      string
	ByDefault bool
	// At is where the test is written.
	At Position
}
