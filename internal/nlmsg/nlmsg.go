// Package nlmsg splits and builds netlink messages and their attributes
// (include/uapi/linux/netlink.h) with the nfnetlink header that follows
// (netfilter/nfnetlink.h), in place and without allocating. It is the
// framing that the NFQUEUE and NFLOG readers share; what the messages mean
// stays with them. It imports nothing of the project.
package nlmsg

import "encoding/binary"

// Sizes and values of the framing.
const (
	HdrLen     = 16 // struct nlmsghdr
	NfGenLen   = 4  // struct nfgenmsg
	AttrHdrLen = 4  // struct nlattr
	// attrTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER.
	attrTypeMask = 0x3fff

	TypeNoop    = 0x1
	TypeError   = 0x2
	TypeDone    = 0x3
	TypeOverrun = 0x4

	FlagRequest = 0x1
	FlagAck     = 0x4
)

// Config commands of nfnetlink_queue and nfnetlink_log: enum
// nfqnl_msg_config_cmds and enum nfulnl_msg_config_cmds give them the same
// values, as both give the attribute that carries them (NFQA_CFG_CMD,
// NFULA_CFG_CMD) the same type.
const (
	CfgCmdBind     = 1
	CfgCmdUnbind   = 2
	CfgCmdPfBind   = 3
	CfgCmdPfUnbind = 4

	CfgAttrCmd = 1
)

// Align rounds n up to the 4-byte alignment of messages and attributes.
func Align(n int) int { return (n + 3) &^ 3 }

// Message is one netlink message split off a buffer. Body aliases it.
type Message struct {
	Type uint16
	// Len is nlmsg_len, header included.
	Len int
	// Body is what follows the header: up to Len, or to the end of the
	// buffer when Cut.
	Body []byte
	// Cut says nlmsg_len ran past the buffer: the message was cut off by a
	// read buffer too small for it (only when Next was told to allow it).
	Cut bool
}

// Next splits the first message off b and returns it with what follows it,
// which is empty when no message follows (or the message was cut). ok is
// false when b does not start with a message: fewer bytes than a header, an
// nlmsg_len below the header's size, or, unless cutOK, above len(b).
// Whether a message longer than the buffer is malformed or only truncated
// depends on the socket, so the caller says (cutOK).
func Next(b []byte, cutOK bool) (m Message, rest []byte, ok bool) {
	if len(b) < HdrLen {
		return Message{}, nil, false
	}
	n := int(binary.NativeEndian.Uint32(b[0:4]))
	if n < HdrLen || (n > len(b) && !cutOK) {
		return Message{}, nil, false
	}
	m = Message{Type: binary.NativeEndian.Uint16(b[4:6]), Len: n}
	if n > len(b) {
		m.Body, m.Cut = b[HdrLen:], true
		return m, nil, true
	}
	m.Body = b[HdrLen:n]
	// The kernel does not pad the last message of a datagram (an odd
	// payload leaves nlmsg_len odd), so the aligned length may overrun.
	if next := Align(n); next < len(b) {
		rest = b[next:]
	}
	return m, rest, true
}

// NextAttr splits the first attribute off b: its type without the flag
// bits, its value and what follows it (empty when nothing does). ok is
// false when b holds no whole attribute: fewer bytes than its header, or a
// length below the header's size or past the end of b.
func NextAttr(b []byte) (typ uint16, v, rest []byte, ok bool) {
	if len(b) < AttrHdrLen {
		return 0, nil, nil, false
	}
	l := int(binary.NativeEndian.Uint16(b[0:2]))
	if l < AttrHdrLen || l > len(b) {
		return 0, nil, nil, false
	}
	typ = binary.NativeEndian.Uint16(b[2:4]) & attrTypeMask
	if next := Align(l); next < len(b) {
		rest = b[next:]
	}
	return typ, b[AttrHdrLen:l], rest, true
}

// PutHeader writes an nlmsghdr for a message of n bytes to the kernel
// (port id 0) at the start of b.
func PutHeader(b []byte, n int, typ, flags uint16, seq uint32) {
	binary.NativeEndian.PutUint32(b[0:4], uint32(n))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	binary.NativeEndian.PutUint32(b[12:16], 0)
}

// PutNfGen writes an nfgenmsg (version NFNETLINK_V0) at the start of b.
func PutNfGen(b []byte, family uint8, resID uint16) {
	b[0] = family
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:4], resID)
}

// PutAttrHdr writes the header of an attribute of l bytes, header
// included, at the start of b.
func PutAttrHdr(b []byte, l int, typ uint16) {
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
}

// PutAttrBE32 writes an attribute holding the big-endian v, as nfnetlink
// sends numbers, at the start of b (8 bytes).
func PutAttrBE32(b []byte, typ uint16, v uint32) {
	PutAttrHdr(b, AttrHdrLen+4, typ)
	binary.BigEndian.PutUint32(b[4:8], v)
}

// AttrBE32 stores the big-endian number that starts the attribute value v,
// as nfnetlink sends numbers, in *dst and sets *has (when not nil). A value
// shorter than four bytes is ignored, leaving both as they were: the
// readers keep what a malformed attribute would otherwise overwrite.
func AttrBE32(v []byte, dst *uint32, has *bool) {
	if len(v) < 4 {
		return
	}
	*dst = binary.BigEndian.Uint32(v)
	if has != nil {
		*has = true
	}
}
