package conntrack

import "time"

// Timeouts are how long a flow lives without packets, per state. A zero field
// takes its default. Each packet of a flow restarts its timeout.
type Timeouts struct {
	TCPSynSent     time.Duration // SYN seen, no SYN-ACK yet (also simultaneous open)
	TCPSynRecv     time.Duration // SYN-ACK seen, handshake ACK not yet
	TCPEstablished time.Duration // handshake done, no FIN or RST yet
	TCPFinWait     time.Duration // a FIN seen in one direction, not yet acknowledged
	TCPCloseWait   time.Duration // one direction closed and acknowledged (half-closed)
	TCPLastAck     time.Duration // FINs seen in both directions, not both acknowledged
	TCPTimeWait    time.Duration // both FINs acknowledged
	TCPClose       time.Duration // RST seen
	UDPUnreplied   time.Duration // UDP, packets in one direction only
	UDPReplied     time.Duration // UDP, a reply was seen
	ICMP           time.Duration // ICMP and ICMPv6 echo
	Generic        time.Duration // any other protocol (SCTP, GRE, ESP, ...)
}

// DefaultTimeouts are the Linux conntrack defaults except TCPEstablished: the
// kernel keeps an idle established TCP flow for 5 days, which in a table with a
// hard cap lets idle flows crowd out live ones. An hour is enough here because
// losing an idle established flow costs nothing but one policy evaluation: its
// next packet carries the kernel's established hint (the kernel still tracks
// it for 5 days) and is picked up as established again (see doc.go).
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPSynSent:     2 * time.Minute,
		TCPSynRecv:     time.Minute,
		TCPEstablished: time.Hour,
		TCPFinWait:     2 * time.Minute,
		TCPCloseWait:   time.Minute,
		TCPLastAck:     30 * time.Second,
		TCPTimeWait:    2 * time.Minute,
		TCPClose:       10 * time.Second,
		UDPUnreplied:   30 * time.Second,
		UDPReplied:     2 * time.Minute,
		ICMP:           30 * time.Second,
		Generic:        10 * time.Minute,
	}
}

// timeout classes index Table.timeouts; the TCP ones equal the TCPState
// values so the hot path converts without a switch.
const (
	toNone = iota // TCPNone, never stored
	toSynSent
	toSynSent2
	toSynRecv
	toEstablished
	toFinWait
	toCloseWait
	toLastAck
	toTimeWait
	toClose
	toUDPUnreplied
	toUDPReplied
	toICMP
	toGeneric
	numTimeouts
)

// table returns the timeouts in nanoseconds indexed by timeout class, with
// zero fields replaced by their defaults.
func (to Timeouts) table() [numTimeouts]int64 {
	d := DefaultTimeouts()
	pick := func(v, def time.Duration) int64 {
		if v <= 0 {
			return int64(def)
		}
		return int64(v)
	}
	var t [numTimeouts]int64
	t[toSynSent] = pick(to.TCPSynSent, d.TCPSynSent)
	t[toSynSent2] = t[toSynSent]
	t[toSynRecv] = pick(to.TCPSynRecv, d.TCPSynRecv)
	t[toEstablished] = pick(to.TCPEstablished, d.TCPEstablished)
	t[toFinWait] = pick(to.TCPFinWait, d.TCPFinWait)
	t[toCloseWait] = pick(to.TCPCloseWait, d.TCPCloseWait)
	t[toLastAck] = pick(to.TCPLastAck, d.TCPLastAck)
	t[toTimeWait] = pick(to.TCPTimeWait, d.TCPTimeWait)
	t[toClose] = pick(to.TCPClose, d.TCPClose)
	t[toUDPUnreplied] = pick(to.UDPUnreplied, d.UDPUnreplied)
	t[toUDPReplied] = pick(to.UDPReplied, d.UDPReplied)
	t[toICMP] = pick(to.ICMP, d.ICMP)
	t[toGeneric] = pick(to.Generic, d.Generic)
	return t
}
