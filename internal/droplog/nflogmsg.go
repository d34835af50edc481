package droplog

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/fwagent/fwagent/internal/nlmsg"
)

// nfnetlink_log constants (include/uapi/linux/netfilter/nfnetlink_log.h).
const (
	subsysULOG   = 4
	typeLogPkt   = subsysULOG << 8   // NFULNL_MSG_PACKET (0)
	typeLogCfg   = subsysULOG<<8 | 1 // NFULNL_MSG_CONFIG
	nfulaPktHdr  = 1
	nfulaMark    = 2
	nfulaTstamp  = 3
	nfulaInDev   = 4
	nfulaOutDev  = 5
	nfulaPayload = 9
	nfulaPrefix  = 10
	nfulaUID     = 11
	nfulaSeq     = 12
	nfulaGID     = 14
)

// logMsg is one NFULNL_MSG_PACKET as parsed in place: Payload and Prefix
// alias the receive buffer.
type logMsg struct {
	HwProto       uint16
	Hook          uint8
	HasHdr        bool
	Mark          uint32
	HasMark       bool
	Time          time.Time
	HasTime       bool
	InDev, OutDev uint32
	HasIn, HasOut bool
	Payload       []byte
	HasPayload    bool
	Prefix        []byte
	HasPrefix     bool
	Seq           uint32
	HasSeq        bool
	// UID and GID are the owner of the packet's local socket, sent when
	// it has a full one.
	UID, GID       uint32
	HasUID, HasGID bool
}

// errLogMalformed reports a datagram that is not a sequence of netlink
// messages; the messages before the fault were still delivered.
var errLogMalformed = errors.New("droplog: malformed netlink message")

// parseLogDatagram calls fn for every log message in the datagram b, in
// order, with m reset for each. It allocates nothing. It reports the error
// code of an NLMSG_ERROR message (a refused config request), if any.
func parseLogDatagram(b []byte, m *logMsg, fn func(*logMsg)) (errno int32, err error) {
	for len(b) > 0 {
		// A message longer than the datagram is malformed here: the
		// buffer holds the kernel's largest batch.
		msg, rest, ok := nlmsg.Next(b, false)
		if !ok {
			return errno, errLogMalformed
		}
		body := msg.Body
		switch msg.Type {
		case typeLogPkt:
			if len(body) >= nlmsg.NfGenLen {
				*m = logMsg{}
				parseLogAttrs(body[nlmsg.NfGenLen:], m)
				fn(m)
			}
		case nlmsg.TypeError:
			if len(body) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(body[0:4])); e != 0 {
					errno = e
				}
			}
		}
		b = rest
	}
	return errno, nil
}

// parseLogAttrs fills m from the NFULA attributes in b. An attribute that
// runs past the message ends the walk; what was read stays.
func parseLogAttrs(b []byte, m *logMsg) {
	for len(b) >= nlmsg.AttrHdrLen {
		t, v, rest, ok := nlmsg.NextAttr(b)
		if !ok {
			return
		}
		switch t {
		case nfulaPktHdr:
			// struct nfulnl_msg_packet_hdr: be16 hw_protocol, u8 hook, u8 pad.
			if len(v) >= 3 {
				m.HwProto, m.Hook, m.HasHdr = binary.BigEndian.Uint16(v[0:2]), v[2], true
			}
		case nfulaMark:
			nlmsg.AttrBE32(v, &m.Mark, &m.HasMark)
		case nfulaTstamp:
			// struct nfulnl_msg_packet_timestamp: be64 sec, be64 usec.
			if len(v) >= 16 {
				sec, usec := binary.BigEndian.Uint64(v[0:8]), binary.BigEndian.Uint64(v[8:16])
				if sec < 1<<40 && usec < 1e6 {
					m.Time, m.HasTime = time.Unix(int64(sec), int64(usec)*1000), true
				}
			}
		case nfulaInDev:
			nlmsg.AttrBE32(v, &m.InDev, &m.HasIn)
		case nfulaOutDev:
			nlmsg.AttrBE32(v, &m.OutDev, &m.HasOut)
		case nfulaUID:
			nlmsg.AttrBE32(v, &m.UID, &m.HasUID)
		case nfulaGID:
			nlmsg.AttrBE32(v, &m.GID, &m.HasGID)
		case nfulaPayload:
			m.Payload, m.HasPayload = v[:len(v):len(v)], true
		case nfulaPrefix:
			// NUL-terminated.
			for i, c := range v {
				if c == 0 {
					v = v[:i]
					break
				}
			}
			m.Prefix, m.HasPrefix = v, true
		case nfulaSeq:
			nlmsg.AttrBE32(v, &m.Seq, &m.HasSeq)
		}
		b = rest
	}
}
