package nfqmsg

import (
	"encoding/binary"
	"errors"
	"syscall"

	"github.com/fwagent/fwagent/internal/nlmsg"
)

// nfnetlink_queue constants (include/uapi/linux/netfilter/nfnetlink_queue.h).
const (
	subsysQueue = 3

	msgPacket       = 0
	msgVerdict      = 1
	msgConfig       = 2
	msgVerdictBatch = 3

	typePacket       = subsysQueue<<8 | msgPacket
	typeVerdict      = subsysQueue<<8 | msgVerdict
	typeConfig       = subsysQueue<<8 | msgConfig
	typeVerdictBatch = subsysQueue<<8 | msgVerdictBatch

	attrPacketHdr  = 1
	attrVerdictHdr = 2
	attrMark       = 3
	attrInDev      = 5
	attrOutDev     = 6
	attrPayload    = 10
	attrCapLen     = 13
	attrSkbInfo    = 14
	attrUID        = 16
	attrGID        = 17
)

// NFQA_SKB_INFO flags (include/uapi/linux/netfilter/nfnetlink_queue.h).
const (
	// SkbCsumNotReady: the transport checksum is partial (CHECKSUM_PARTIAL).
	SkbCsumNotReady = 1 << 0
	// SkbGSO: the packet is a GSO aggregate of several segments.
	SkbGSO = 1 << 1
	// SkbCsumVerified: the device verified the checksum.
	SkbCsumVerified = 1 << 2
)

// Verdict codes (include/uapi/linux/netfilter.h).
const (
	Drop   uint32 = 0
	Accept uint32 = 1
	Repeat uint32 = 4
)

// Packet is one queued packet as the kernel described it. It is a view: the
// Payload aliases the receive buffer and is valid only until the verdicts of
// the read it came from have been sent.
type Packet struct {
	// ID is the kernel's packet id, unique per queue and increasing.
	ID uint32
	// Queue is the queue number the message came from (nfgenmsg res_id).
	Queue uint16
	// HwProtocol is the link-layer protocol (ETH_P_IP, ETH_P_IPV6), as the
	// kernel gives it in network order converted to host order.
	HwProtocol uint16
	// Hook is the netfilter hook (NF_INET_LOCAL_IN, ...).
	Hook uint8
	// HasMark is set when the kernel sent NFQA_MARK; it omits it when the
	// mark is 0.
	HasMark bool
	// Truncated is set when the message did not fit the receive buffer or
	// ended inside an attribute: Payload is then nil so the packet is decided
	// as undecodable rather than on partial bytes.
	Truncated bool
	Mark      uint32
	// InDev and OutDev are interface indexes, 0 when absent.
	InDev  uint32
	OutDev uint32
	// CapLen is the packet's length before the kernel cut it to the copy
	// range, 0 when it was copied whole.
	CapLen uint32
	// SkbInfo is NFQA_SKB_INFO (SkbGSO, SkbCsumNotReady, ...), 0 when
	// absent. With a GSO queue (Config.GSO) a packet may be an aggregate of
	// several segments, longer than the MTU, whose transport checksum is
	// not filled in yet (SkbCsumNotReady): the device or the kernel computes
	// it on the way out, so nothing here may verify it.
	SkbInfo uint32
	// UID and GID are the owner of the packet's local socket (NFQA_UID,
	// NFQA_GID), sent only on a queue opened with NFQA_CFG_F_UID_GID and
	// only for packets with a full socket; HasUID and HasGID say they came.
	HasUID, HasGID bool
	UID, GID       uint32
	// Requeue is set by the Reader on a packet that was copied under a
	// smaller copy range than the queue now has (see Reader.SetCopyRange):
	// its verdict is already NF_REPEAT, so it comes back copied to the new
	// range, and the BatchFunc must leave it alone.
	Requeue bool
	// Payload starts at the network header.
	Payload []byte
}

// Info is what Parse saw besides packets.
type Info struct {
	// KernelErrors counts NLMSG_ERROR messages with a non-zero error: the
	// kernel refusing a verdict or config message we sent.
	KernelErrors int
	// LastErrno is the error of the last of them.
	LastErrno syscall.Errno
	// Acks counts NLMSG_ERROR messages with error 0 (acknowledgements); AckSeq
	// is the sequence number of the last one.
	Acks   int
	AckSeq uint32
	// NoID counts packet messages without a readable NFQA_PACKET_HDR: the
	// kernel holds such a packet, and nobody can answer it by id.
	NoID int
	// Other counts messages of other types, skipped.
	Other int
}

// ErrMalformed reports a datagram that is not a sequence of netlink
// messages; the packets parsed before the fault are still returned.
var ErrMalformed = errors.New("nfqmsg: malformed netlink message")

// Parse appends to pkts every packet message in the datagram b and returns the
// extended slice. It allocates nothing when pkts has room. Packets keep
// pointing into b.
func Parse(b []byte, pkts []Packet) ([]Packet, Info, error) {
	var info Info
	for len(b) > 0 {
		// A message longer than the buffer is a packet cut off by the
		// read buffer, not a fault: it is still answered, as Truncated.
		msg, rest, ok := nlmsg.Next(b, true)
		if !ok {
			return pkts, info, ErrMalformed
		}
		body := msg.Body
		switch msg.Type {
		case typePacket:
			if len(body) < nlmsg.NfGenLen {
				info.NoID++
				break
			}
			// Fill the slot in place: copying a Packet per message shows in
			// profiles.
			pkts = append(pkts, Packet{Queue: binary.BigEndian.Uint16(body[2:4])})
			if !parseAttrs(body[nlmsg.NfGenLen:], &pkts[len(pkts)-1], msg.Cut) {
				pkts = pkts[:len(pkts)-1]
				info.NoID++
			}
		case nlmsg.TypeError:
			if len(body) < 4 {
				return pkts, info, ErrMalformed
			}
			if e := int32(binary.NativeEndian.Uint32(body[0:4])); e != 0 {
				info.KernelErrors++
				info.LastErrno = syscall.Errno(-e)
			} else {
				info.Acks++
				if len(body) >= 4+12 {
					info.AckSeq = binary.NativeEndian.Uint32(body[4+8 : 4+12])
				}
			}
		case nlmsg.TypeNoop, nlmsg.TypeDone:
		default:
			info.Other++
		}
		b = rest
	}
	return pkts, info, nil
}

// parseAttrs fills p from the NFQA attributes in b and reports whether it
// found the packet id. cut says the message was cut off by the buffer.
func parseAttrs(b []byte, p *Packet, cut bool) bool {
	hasID := false
	for len(b) >= nlmsg.AttrHdrLen {
		t, v, rest, ok := nlmsg.NextAttr(b)
		if !ok {
			// An attribute running past the message: keep what was read,
			// but never a partial payload.
			cut = true
			break
		}
		switch t {
		case attrPacketHdr:
			// struct nfqnl_msg_packet_hdr is packed: be32 id, be16 proto, u8 hook.
			if len(v) >= 7 {
				p.ID = binary.BigEndian.Uint32(v[0:4])
				p.HwProtocol = binary.BigEndian.Uint16(v[4:6])
				p.Hook = v[6]
				hasID = true
			}
		case attrMark:
			nlmsg.AttrBE32(v, &p.Mark, &p.HasMark)
		case attrInDev:
			nlmsg.AttrBE32(v, &p.InDev, nil)
		case attrOutDev:
			nlmsg.AttrBE32(v, &p.OutDev, nil)
		case attrCapLen:
			nlmsg.AttrBE32(v, &p.CapLen, nil)
		case attrSkbInfo:
			nlmsg.AttrBE32(v, &p.SkbInfo, nil)
		case attrUID:
			nlmsg.AttrBE32(v, &p.UID, &p.HasUID)
		case attrGID:
			nlmsg.AttrBE32(v, &p.GID, &p.HasGID)
		case attrPayload:
			// Full slice expression: a caller appending to Payload must not
			// overwrite the next message in the receive buffer.
			p.Payload = v[:len(v):len(v)]
		}
		b = rest
	}
	if cut {
		p.Truncated = true
		p.Payload = nil
	}
	return hasID
}
