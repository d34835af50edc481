package conntrack

import "github.com/fwagent/fwagent/internal/packet"

// TCPState is the TCP state of a tracked flow, finer than State.
type TCPState uint8

// The values double as timeout classes (see timeouts.go): keep the order.
const (
	TCPNone        TCPState = iota // not TCP
	TCPSynSent                     // SYN from the originator
	TCPSynSent2                    // SYN from both sides (simultaneous open)
	TCPSynRecv                     // SYN-ACK seen
	TCPEstablished                 // handshake completed
	TCPFinWait                     // FIN from one side, not acknowledged
	TCPCloseWait                   // FIN from one side, acknowledged (half-closed)
	TCPLastAck                     // FIN from both sides, not both acknowledged
	TCPTimeWait                    // FIN from both sides, both acknowledged
	TCPClose                       // RST seen
)

func (s TCPState) String() string {
	switch s {
	case TCPNone:
		return "none"
	case TCPSynSent:
		return "syn_sent"
	case TCPSynSent2:
		return "syn_sent2"
	case TCPSynRecv:
		return "syn_recv"
	case TCPEstablished:
		return "established"
	case TCPFinWait:
		return "fin_wait"
	case TCPCloseWait:
		return "close_wait"
	case TCPLastAck:
		return "last_ack"
	case TCPTimeWait:
		return "time_wait"
	case TCPClose:
		return "close"
	}
	return "unknown"
}

// tcpClass is what a segment's flags make it, for the state machine.
type tcpClass uint8

const (
	tcpBad tcpClass = iota // a flag combination no TCP stack sends
	tcpSYN
	tcpSYNACK
	tcpFIN
	tcpACK
	tcpRST
)

// classOf sorts flags into classes. PSH, ECE and CWR never change the class
// (ECN-setup SYNs carry ECE|CWR). Every other combination — SYN|FIN,
// SYN|RST, FIN without ACK, no flags at all (NULL and Xmas scans) — is bad.
func classOf(flags uint8) tcpClass {
	switch flags &^ (packet.TCPPsh | packet.TCPEce | packet.TCPCwr) {
	case packet.TCPSyn, packet.TCPSyn | packet.TCPUrg:
		return tcpSYN
	case packet.TCPSyn | packet.TCPAck:
		return tcpSYNACK
	case packet.TCPRst, packet.TCPRst | packet.TCPAck:
		return tcpRST
	case packet.TCPFin | packet.TCPAck, packet.TCPFin | packet.TCPAck | packet.TCPUrg:
		return tcpFIN
	case packet.TCPAck, packet.TCPAck | packet.TCPUrg:
		return tcpACK
	}
	return tcpBad
}

// step is the outcome of one segment in the state machine.
type step uint8

const (
	stepOK      step = iota
	stepInvalid      // no state allows this segment; the flow is unchanged
	stepReopen       // a SYN reuses the tuple of a closed flow: start over
)

// tcpStep advances e's TCP state by one segment from direction dir (0
// original, 1 reply). Without sequence-window tracking it accepts what a
// state could plausibly see, including retransmissions and data reordered
// behind a FIN; FIN acknowledgement is checked against sequence numbers so a
// stale ACK does not close a direction early.
func tcpStep(e *entry, p *packet.Packet, dir int) step {
	switch classOf(p.TCPFlags) {
	case tcpRST:
		e.tcp = TCPClose
		return stepOK
	case tcpSYN:
		switch e.tcp {
		case TCPSynSent:
			if dir == 1 {
				e.tcp = TCPSynSent2
			}
			return stepOK
		case TCPSynSent2:
			return stepOK
		case TCPTimeWait, TCPClose:
			return stepReopen
		}
		// A SYN from the originator later on is a retransmission or a
		// stray; accept it without changing state, as the kernel does. The
		// responder never sends a bare SYN after the handshake started.
		if dir == 0 {
			return stepOK
		}
		return stepInvalid
	case tcpSYNACK:
		switch e.tcp {
		case TCPSynSent:
			if dir == 1 {
				e.tcp = TCPSynRecv
				return stepOK
			}
			return stepInvalid
		case TCPSynSent2:
			e.tcp = TCPSynRecv
			return stepOK
		case TCPSynRecv:
			return stepOK // retransmission, or the second SYN-ACK of a simultaneous open
		}
		// A retransmitted SYN-ACK whose ACK was lost; only the responder sends one.
		if dir == 1 {
			return stepOK
		}
		return stepInvalid
	case tcpFIN:
		switch e.tcp {
		case TCPSynSent, TCPSynSent2:
			return stepInvalid
		case TCPTimeWait, TCPClose:
			return stepOK // retransmission
		}
		e.flags |= fFinOrig << dir
		// The FIN takes one sequence number after the payload; the peer's
		// ACK of it acknowledges finEnd.
		e.finEnd[dir] = p.TCPSeq + uint32(len(p.Payload)) + 1
		tcpAck(e, p, dir)
		tcpClosing(e)
		return stepOK
	case tcpACK:
		switch e.tcp {
		case TCPSynSent, TCPSynSent2:
			return stepInvalid
		case TCPSynRecv:
			e.tcp = TCPEstablished
			return stepOK
		case TCPEstablished, TCPTimeWait, TCPClose:
			return stepOK
		}
		tcpAck(e, p, dir)
		tcpClosing(e)
		return stepOK
	}
	return stepInvalid
}

// tcpAck records whether the segment acknowledges the other side's FIN.
func tcpAck(e *entry, p *packet.Packet, dir int) {
	other := 1 - dir
	if e.flags&(fFinOrig<<other) != 0 && int32(p.TCPAck-e.finEnd[other]) >= 0 {
		e.flags |= fFinAckedOrig << other
	}
}

// tcpClosing derives the closing state from the per-direction FIN bits.
func tcpClosing(e *entry) {
	fins := e.flags & (fFinOrig | fFinReply)
	acked := e.flags & (fFinAckedOrig | fFinAckedReply)
	switch {
	case fins == 0:
	case fins == fFinOrig|fFinReply && acked == fFinAckedOrig|fFinAckedReply:
		e.tcp = TCPTimeWait
	case fins == fFinOrig|fFinReply:
		e.tcp = TCPLastAck
	case acked != 0:
		e.tcp = TCPCloseWait
	default:
		e.tcp = TCPFinWait
	}
}
