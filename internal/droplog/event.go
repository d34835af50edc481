package droplog

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
)

// Event is one logged packet. Its JSON form (AppendJSON, MarshalJSON) is the
// schema documented in the package comment; the Go fields hold the same data
// in typed form, so that filling an Event on the reader's hot path copies
// values instead of formatting strings.
type Event struct {
	// Time is when the kernel logged the packet (the NFLOG timestamp), or
	// when the reader received it if the kernel sent none.
	Time time.Time
	// RuleID is the ID carried in the packet mark: rule index + 1, 0 for the
	// hook's default. Not part of the JSON; Rule is its resolved name.
	RuleID uint32
	// Rule is the name of the deciding rule.
	Rule string
	// Verdict is what happened to the packet: drop, reject or accept.
	Verdict string
	// Event is the log event: drop, reject, accept, would_drop or
	// would_reject.
	Event string
	// Hook is the netfilter hook the packet was logged at.
	Hook string
	// Family is the IP version.
	Family packet.Family
	// Proto is the IP protocol number (for IPv6, after extension headers).
	Proto uint8
	// Src and Dst are the packet's addresses; invalid when the payload could
	// not be decoded.
	Src, Dst netip.Addr
	// SrcPort and DstPort are 0 when the protocol has no ports.
	SrcPort, DstPort uint16
	// Length is the IP packet length from its header.
	Length int
	// In and Out are the interface names, empty when none.
	In, Out string
	// L4 is set when a transport header was decoded; TCPFlags, ICMPType and
	// ICMPCode are valid only then, for their protocol.
	L4       bool
	TCPFlags uint8
	ICMPType uint8
	ICMPCode uint8
	// Prefix is the raw NFLOG prefix of the log rule.
	Prefix string
	// Mark is the packet mark.
	Mark uint32
	// HasUID/UID and HasGID/GID are the owner of the packet's local socket
	// (NFULA_UID, NFULA_GID: sent when the packet has a full socket).
	HasUID, HasGID bool
	UID, GID       uint32
	// HasCgroup says Cgroup, the socket's cgroup v2 path below the root
	// ("" is the root cgroup), was found (Config.Cgroup).
	HasCgroup bool
	Cgroup    string
}

// timeLayout is RFC 3339 with a fixed nine-digit fraction: unlike
// time.RFC3339Nano it never trims zeros, so lines sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends the event as one JSON object (no newline) to b. Every
// string that came from the kernel or a packet (prefix, interface names, rule
// names) is escaped exactly as encoding/json escapes it, so no field can
// break out of its string or forge a log line.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = appendTime(b, e.Time)
	b = append(b, `","rule":`...)
	b = appendString(b, e.Rule)
	b = append(b, `,"verdict":`...)
	b = appendString(b, e.Verdict)
	b = append(b, `,"event":`...)
	b = appendString(b, e.Event)
	b = append(b, `,"hook":`...)
	b = appendString(b, e.Hook)
	b = append(b, `,"family":"`...)
	b = append(b, e.Family.String()...)
	b = append(b, `","proto":"`...)
	b = packet.AppendProtoName(b, e.Proto)
	b = append(b, '"')
	if e.Src.IsValid() {
		b = append(b, `,"src":"`...)
		b = e.Src.AppendTo(b)
		b = append(b, '"')
	}
	if e.Dst.IsValid() {
		b = append(b, `,"dst":"`...)
		b = e.Dst.AppendTo(b)
		b = append(b, '"')
	}
	if e.SrcPort != 0 {
		b = append(b, `,"sport":`...)
		b = strconv.AppendUint(b, uint64(e.SrcPort), 10)
	}
	if e.DstPort != 0 {
		b = append(b, `,"dport":`...)
		b = strconv.AppendUint(b, uint64(e.DstPort), 10)
	}
	b = append(b, `,"length":`...)
	b = strconv.AppendInt(b, int64(e.Length), 10)
	if e.In != "" {
		b = append(b, `,"in":`...)
		b = appendString(b, e.In)
	}
	if e.Out != "" {
		b = append(b, `,"out":`...)
		b = appendString(b, e.Out)
	}
	if e.L4 {
		switch e.Proto {
		case packet.ProtoTCP:
			b = append(b, `,"tcp_flags":"`...)
			b = appendTCPFlags(b, e.TCPFlags)
			b = append(b, '"')
		case packet.ProtoICMP, packet.ProtoICMPv6:
			b = append(b, `,"icmp_type":`...)
			b = strconv.AppendUint(b, uint64(e.ICMPType), 10)
			b = append(b, `,"icmp_code":`...)
			b = strconv.AppendUint(b, uint64(e.ICMPCode), 10)
		}
	}
	b = append(b, `,"prefix":`...)
	b = appendString(b, e.Prefix)
	b = append(b, `,"mark":`...)
	b = strconv.AppendUint(b, uint64(e.Mark), 10)
	if e.HasUID {
		b = append(b, `,"uid":`...)
		b = strconv.AppendUint(b, uint64(e.UID), 10)
	}
	if e.HasGID {
		b = append(b, `,"gid":`...)
		b = strconv.AppendUint(b, uint64(e.GID), 10)
	}
	if e.HasCgroup {
		b = append(b, `,"cgroup":`...)
		b = appendString(b, "/"+e.Cgroup)
	}
	return append(b, '}')
}

// MarshalJSON makes encoding/json produce the same object as AppendJSON.
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 384)), nil
}

// tcpFlagLetters are pf's flag letters in pf's order (FIN, SYN, RST, PSH,
// ACK, URG, ECE, CWR), so a SYN-ACK reads "SA" as in pf logs.
var tcpFlagLetters = [8]struct {
	bit    uint8
	letter byte
}{
	{packet.TCPFin, 'F'}, {packet.TCPSyn, 'S'}, {packet.TCPRst, 'R'}, {packet.TCPPsh, 'P'},
	{packet.TCPAck, 'A'}, {packet.TCPUrg, 'U'}, {packet.TCPEce, 'E'}, {packet.TCPCwr, 'W'},
}

func appendTCPFlags(b []byte, f uint8) []byte {
	for _, l := range tcpFlagLetters {
		if f&l.bit != 0 {
			b = append(b, l.letter)
		}
	}
	return b
}
