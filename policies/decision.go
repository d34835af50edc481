package policies

import (
	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// Action is what a rule or default does with a packet.
type Action uint8

const (
	ActionAccept Action = iota
	ActionDrop
	ActionReject
)

func (a Action) String() string {
	switch a {
	case ActionAccept:
		return "accept"
	case ActionDrop:
		return "drop"
	case ActionReject:
		return "reject"
	}
	return "unknown"
}

// NoRule is Decision.Rule when a hook's default decided.
const NoRule = -1

// Input is everything a decision may look at. The caller owns it and may
// reuse it for the next packet.
type Input struct {
	Pkt   *packet.Packet
	Hook  nf.Hook
	InIf  string
	OutIf string
	// State is the packet's flow state: the kernel's conntrack view carried
	// in the mark on the live path, the flow tracker's otherwise.
	State nf.State
	// Now is a monotonic time in nanoseconds, used by rate limits.
	Now int64
	// HasUID and HasGID say the kernel gave the owner of the packet's local
	// socket (NFQA_UID, NFQA_GID): false for packets without a full socket
	// (forwarded, most input packets before a connection is established,
	// kernel-generated replies) and for packets from captures.
	HasUID, HasGID bool
	UID, GID       uint32
	// Cgroups finds the cgroup of the packet's local socket; nil when there
	// is no way to know (captures), and then no cgroup rule matches.
	Cgroups CgroupFinder

	// cgroup memoises Cgroups for one Decide call: 0 not asked yet, 1
	// known (cgroupPath), 2 unknown.
	cgroupState uint8
	cgroupPath  string
	// ServerName and NameState carry what the pipeline's per-flow
	// reassembly learned of the TLS server name (TCP or QUIC).
	ServerName []byte
	NameState  l7.NameState
	// Streams is the pipeline's per-flow TCP reassembly, asked only when a
	// rule that reads a stream is a candidate; nil without one (policy
	// tests, a full table), and each packet is then read on its own.
	Streams Streams
}

// Decision is the result of evaluating a Program on one packet.
type Decision struct {
	// Action is what the rule (or default) says. In audit (mode: audit or a
	// rule's audit: true) the packet is accepted anyway; see Audit.
	Action Action
	// Rule is the index of the deciding rule in Program.Rules, or NoRule.
	Rule int32
	// Log asks for the packet to be logged through NFLOG.
	Log bool
	// Audit: accept the packet, but log what Action would have done.
	Audit bool
	// SetMark and Mark: set the packet mark on accept.
	SetMark bool
	Mark    uint32
	// Offload: the rest of the flow in this direction at this hook may be
	// accepted in the kernel: the decision holds for every later packet the
	// kernel's offload rule would accept, whatever its state (new or
	// established).
	Offload bool
	// Cacheable: the decision holds for later packets of the flow in the
	// same direction, at the same hook, in the same flow state (the deciding
	// rule looks at no per-packet field, and no earlier rule was skipped for
	// one).
	Cacheable bool
	// Pending: Rule reads an L7 field that this packet's stream has not
	// completed yet (a TCP handshake, the first segments of a ClientHello,
	// a DNS message or HTTP request head in progress). The packet is
	// accepted so that the stream can reach the bytes that decide; nothing
	// is cached, logged or offloaded.
	Pending bool
}

// Effective is the verdict the kernel applies: Action, except that audit
// accepts.
func (d Decision) Effective() Action {
	if d.Audit {
		return ActionAccept
	}
	return d.Action
}
