package policies

import (
	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/l7/quic"
	"github.com/fwagent/fwagent/internal/packet"
)

// Streams is what the pipeline's per-flow TCP reassembly offers a decision.
// Decide asks only when a rule that reads the field is a candidate for the
// packet, so flows that meet no such rule cost nothing. Each method answers
// for the packet being decided, and the same way when asked twice.
type Streams interface {
	// TLSName sets in.ServerName and in.NameState from the flow's
	// ClientHello as reassembled so far; it leaves NameUnknown when it
	// has no reassembly for the flow, and the packet is read alone.
	TLSName(in *Input)
	// DNSMessages returns, with NameFound, the DNS messages of the TCP
	// stream that this segment completes (without their length prefix);
	// or none, with NamePending (the next message is not whole yet),
	// NameFailed (the stream cannot be framed any more) or NameUnknown
	// (no reassembly: read the packet alone).
	DNSMessages(in *Input) ([][]byte, l7.NameState)
	// HTTPHosts is DNSMessages for the HTTP/1.x request heads the segment
	// completes: the hosts each names (an empty one for a head without
	// any); NameAbsent when the stream is not HTTP/1.x.
	HTTPHosts(in *Input) ([][]byte, l7.NameState)
}

// ReadsStreams reports whether a rule of the program reads a field that a
// TCP stream's reassembly can answer (dns_qname, tls_sni, http_host): the
// pipeline keeps no per-flow stream state for a program without one.
func (p *Program) ReadsStreams() bool { return p.streams }

// l7Result is what an L7 field says of a packet.
type l7Result uint8

const (
	l7No l7Result = iota
	l7Yes
	// l7Pending: the bytes that decide are not all there yet.
	l7Pending
)

// An L7 name field can see several names in one packet: the questions of a
// DNS query (and of each query a TCP segment completes), the hosts of the
// HTTP requests a segment completes. A rule that accepts needs every name to
// match (an allowlist must not let an unlisted name ride along); a rule that
// drops or rejects needs one (a denylist catches a listed name wherever it
// is). A name that cannot be read matches neither way.
type nameVote struct {
	all        bool // the rule accepts
	seen, some bool // a name was read / one matched
	every      bool // every name read matched, none unreadable
}

func newVote(all bool) nameVote { return nameVote{all: all, every: true} }

func (v *nameVote) add(matched bool) {
	v.seen = true
	v.some = v.some || matched
	v.every = v.every && matched
}

func (v *nameVote) unreadable() { v.every = false }

func (v *nameVote) result() bool {
	if v.all {
		return v.seen && v.every
	}
	return v.some
}

// matchSNI checks tls_sni: the name the pipeline's reassembly found (TCP
// ClientHello or QUIC Initial), or, without one, the packet's own payload.
func matchSNI(e *ruleExec, in *Input, pkt *packet.Packet, l4 bool) l7Result {
	if in.NameState == l7.NameUnknown && in.Streams != nil && l4 && pkt.Proto == packet.ProtoTCP {
		in.Streams.TLSName(in)
	}
	switch in.NameState {
	case l7.NameFound:
		return yesNo(e.sni.Match(in.ServerName))
	case l7.NamePending:
		return l7Pending
	case l7.NameAbsent, l7.NameFailed:
		return l7No
	}
	if !l4 {
		return l7No
	}
	var name []byte
	var err error
	switch pkt.Proto {
	case packet.ProtoTCP:
		name, err = l7.TLSServerName(pkt.Payload)
	case packet.ProtoUDP:
		// Without the pipeline's reassembly (eval, tests), the Initial
		// packets of this datagram alone. This allocates (keys, buffers);
		// the pipeline's per-flow reassembly saves that on the live path.
		name, err = quic.ServerName(pkt.Payload)
	default:
		return l7No
	}
	switch {
	case err == l7.ErrIncomplete:
		return l7Pending
	case err != nil:
		return l7No
	}
	return yesNo(e.sni.Match(name))
}

// matchDNS checks dns_qname on a UDP query, or on the queries a TCP segment
// completes.
func matchDNS(e *ruleExec, in *Input, pkt *packet.Packet, l4 bool) l7Result {
	if !l4 {
		return l7No
	}
	v := newVote(e.action == ActionAccept)
	switch pkt.Proto {
	case packet.ProtoUDP:
		voteDNS(&v, e.dns, pkt.Payload)
		return yesNo(v.result())
	case packet.ProtoTCP:
	default:
		return l7No
	}
	if in.Streams != nil {
		msgs, st := in.Streams.DNSMessages(in)
		if r, ok := streamVote(&v, msgs, st, func(m []byte) { voteDNS(&v, e.dns, m) }); ok {
			return r
		}
	}
	// Alone, a segment is read as the start of the stream; its first
	// message decides once its questions are whole.
	msg, _, err := l7.DNSTCPMessage(pkt.Payload)
	switch {
	case err == l7.ErrIncomplete && len(pkt.Payload) > 2:
		if _, err := l7.DNSQueryNameTCP(pkt.Payload, nil); err == l7.ErrIncomplete {
			return l7Pending
		}
		msg = pkt.Payload[2:]
	case err == l7.ErrIncomplete:
		return l7Pending
	case err != nil:
		return l7No
	}
	voteDNS(&v, e.dns, msg)
	return yesNo(v.result())
}

// voteDNS adds the questions of one DNS message to v. A message that is not
// a query with questions has no name the rule could match.
func voteDNS(v *nameVote, m *l7.NameMatcher, msg []byte) {
	q, err := l7.NewDNSQuestions(msg)
	if err != nil {
		v.unreadable()
		return
	}
	var buf [l7.MaxNameLen]byte
	for name, ok := q.Next(buf[:0]); ok; name, ok = q.Next(buf[:0]) {
		v.add(m.Match(name))
	}
	if q.Err() != nil {
		v.unreadable()
	}
}

// matchHTTP checks http_host on the HTTP/1.x request heads a TCP segment
// completes.
func matchHTTP(e *ruleExec, in *Input, pkt *packet.Packet, l4 bool) l7Result {
	if !l4 || pkt.Proto != packet.ProtoTCP {
		return l7No
	}
	v := newVote(e.action == ActionAccept)
	if in.Streams != nil {
		hosts, st := in.Streams.HTTPHosts(in)
		if r, ok := streamVote(&v, hosts, st, func(h []byte) { v.add(e.http.Match(h)) }); ok {
			return r
		}
	}
	// Alone, a segment is read as the start of a request.
	req, _, err := l7.ParseHTTPRequest(pkt.Payload)
	switch {
	case err == l7.ErrIncomplete:
		return l7Pending
	case err != nil:
		return l7No
	}
	if req.NHosts == 0 {
		v.add(false)
	}
	for _, h := range req.Hosts[:req.NHosts] {
		v.add(e.http.Match(h))
	}
	return yesNo(v.result())
}

// streamVote decides on what the stream reassembly read: vote is called
// with each item it completed (a DNS message, a Host value). ok is false
// when the reassembly has no answer (NameUnknown: no stream is kept), and
// the segment is read alone.
func streamVote(v *nameVote, items [][]byte, st l7.NameState, vote func([]byte)) (r l7Result, ok bool) {
	switch st {
	case l7.NameFound:
		for _, it := range items {
			vote(it)
		}
		return yesNo(v.result()), true
	case l7.NamePending:
		return l7Pending, true
	case l7.NameAbsent, l7.NameFailed:
		return l7No, true
	}
	return r, false
}

func yesNo(b bool) l7Result {
	if b {
		return l7Yes
	}
	return l7No
}
