package l7

import "encoding/binary"

// DNSQuestions reads every question of one DNS query, in order. A resolver
// answers (or forwards) each question a query carries, so a filter that read
// only the first would let a blocked name ride behind an allowed one.
//
//	q, err := NewDNSQuestions(msg)
//	for name, ok := q.Next(buf[:0]); ok; name, ok = q.Next(buf[:0]) { ... }
//	if q.Err() != nil { ... }
type DNSQuestions struct {
	msg  []byte
	off  int
	left int
	err  error
}

// NewDNSQuestions starts reading the questions of the DNS message msg (a
// whole message: a UDP payload, or one message of a TCP stream without its
// length prefix). The error is ErrTruncated, ErrNotQuery or ErrNoQuestion,
// as for DNSQueryName.
func NewDNSQuestions(msg []byte) (DNSQuestions, error) {
	if len(msg) < dnsHeaderLen {
		return DNSQuestions{}, ErrTruncated
	}
	if msg[2]&0x80 != 0 {
		return DNSQuestions{}, ErrNotQuery
	}
	n := int(binary.BigEndian.Uint16(msg[4:6]))
	if n == 0 {
		return DNSQuestions{}, ErrNoQuestion
	}
	return DNSQuestions{msg: msg, off: dnsHeaderLen, left: n}, nil
}

// Next appends the next question's name to dst, in DNSQueryName's
// presentation form, and returns it; false when there is none left or the
// message is broken (see Err). Each question costs at least five bytes, so a
// QDCOUNT larger than the message runs into ErrTruncated, not a long loop.
func (q *DNSQuestions) Next(dst []byte) ([]byte, bool) {
	if q.left == 0 || q.err != nil {
		return dst, false
	}
	out, end, err := appendName(dst, q.msg, q.off)
	if err == nil && end+dnsQuestionTail > len(q.msg) {
		err = ErrTruncated
	}
	if err != nil {
		q.err = err
		return dst, false
	}
	q.off = end + dnsQuestionTail
	q.left--
	return out, true
}

// Err is the error that stopped Next early, or nil once every question was
// read.
func (q *DNSQuestions) Err() error { return q.err }

// DNSTCPMessage returns the first whole message of a DNS-over-TCP stream b
// (RFC 1035 section 4.2.2, RFC 7766: each message is preceded by its
// two-byte length, and a client may send several back to back), without
// its prefix, and n, the stream bytes it spans with the prefix.
// ErrIncomplete: the message continues beyond b. ErrTruncated: a zero
// length, which no message has.
func DNSTCPMessage(b []byte) (msg []byte, n int, err error) {
	if len(b) < 2 {
		return nil, 0, ErrIncomplete
	}
	l := int(binary.BigEndian.Uint16(b))
	if l == 0 {
		return nil, 0, ErrTruncated
	}
	if len(b) < 2+l {
		return nil, 0, ErrIncomplete
	}
	return b[2 : 2+l : 2+l], 2 + l, nil
}
