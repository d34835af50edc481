package l7

import "encoding/binary"

const (
	dnsHeaderLen = 12
	// dnsQuestionTail is QTYPE and QCLASS after the question name.
	dnsQuestionTail = 4
	// maxWireName is the RFC 1035 limit on a name's wire length, including
	// the length bytes and the terminating root label.
	maxWireName = 255
	maxLabel    = 63
	// maxPointers bounds the compression pointers one name may follow. A
	// name of at most 255 wire bytes has at most 127 labels, so a real name
	// never needs more; a chain of pointers alone (which adds no wire
	// bytes) is a loop.
	maxPointers = 127
)

// MaxNameLen is the longest name DNSQueryName can append: a 255-byte wire
// name of four labels whose 250 bytes all need a four-byte escape, plus three
// dots. A dst with this much spare capacity is never reallocated.
const MaxNameLen = 1003

// DNSQueryName appends the name of the first question of the DNS query msg (a
// UDP payload) to dst and returns the extended slice.
//
// The name is in presentation form: lower case (ASCII only), labels joined by
// '.', no trailing dot, the root name as "". Label bytes are kept, but every
// byte outside '!'..'~', and '.' and '\' themselves, is written as a
// three-digit decimal escape "\DDD" (RFC 1035 section 5.1). So a '.' in the
// result always separates labels: a query for the one label "a.b" under
// "example" yields `a\046b.example`, which a pattern for "*.example" matches
// (the resolver sends it to example's servers) and one for "a.b.example" or
// "*.b.example" does not. Rejecting such labels instead would let a client
// hide a query for a blocked zone behind one odd byte.
//
// Any opcode is accepted: what matters is the name the message asks about.
// A compression pointer may point anywhere in the message, forwards too:
// encoders only write backward pointers and strict decoders only accept
// those, but lenient ones (dnsmasq, for one) follow any pointer, so a query
// whose name hides behind a forward pointer is still a query for that name
// to the resolver that receives it, and must be read as one here. Loops end
// at the name length limit or after maxPointers pointers.
//
// On error dst is returned unchanged. The error is one of ErrTruncated,
// ErrNotQuery, ErrNoQuestion, ErrPointer, ErrLabelTooLong or ErrNameTooLong.
func DNSQueryName(msg []byte, dst []byte) ([]byte, error) {
	if len(msg) < dnsHeaderLen {
		return dst, ErrTruncated
	}
	if msg[2]&0x80 != 0 {
		return dst, ErrNotQuery
	}
	if binary.BigEndian.Uint16(msg[4:6]) == 0 {
		return dst, ErrNoQuestion
	}
	out, end, err := appendName(dst, msg, dnsHeaderLen)
	if err != nil {
		return dst, err
	}
	if end+dnsQuestionTail > len(msg) {
		return dst, ErrTruncated
	}
	return out, nil
}

// DNSQueryNameTCP is DNSQueryName for the start of a DNS-over-TCP stream:
// payload begins with the two-byte message length (RFC 1035 section 4.2.2).
// Only the first message is examined.
//
// When the message continues beyond payload, the question is often complete
// anyway and its name is returned; only if it is not does the call return
// ErrIncomplete.
func DNSQueryNameTCP(payload []byte, dst []byte) ([]byte, error) {
	if len(payload) < 2 {
		return dst, ErrIncomplete
	}
	n := int(binary.BigEndian.Uint16(payload))
	msg := payload[2:]
	if n <= len(msg) {
		return DNSQueryName(msg[:n], dst)
	}
	out, err := DNSQueryName(msg, dst)
	if err == ErrTruncated {
		return dst, ErrIncomplete
	}
	return out, err
}

// appendName appends the presentation form of the name at msg[off:] to dst.
// end is the offset just after the name where it started, that is after its
// root label or its first pointer.
func appendName(dst, msg []byte, off int) (out []byte, end int, err error) {
	start := len(dst)
	end = -1
	wire := 1 // the root label
	pointers := 0
	for {
		if off >= len(msg) {
			return dst[:start], 0, ErrTruncated
		}
		c := int(msg[off])
		switch {
		case c == 0:
			if end < 0 {
				end = off + 1
			}
			return dst, end, nil
		case c&0xC0 == 0xC0:
			if off+1 >= len(msg) {
				return dst[:start], 0, ErrTruncated
			}
			if pointers++; pointers > maxPointers {
				return dst[:start], 0, ErrPointer
			}
			if end < 0 {
				end = off + 2
			}
			off = (c&0x3F)<<8 | int(msg[off+1])
			continue
		case c > maxLabel:
			// 0x40 and 0x80 are the extended and reserved label types.
			return dst[:start], 0, ErrLabelTooLong
		}
		wire += 1 + c
		if wire > maxWireName {
			return dst[:start], 0, ErrNameTooLong
		}
		label := msg[off+1:]
		if c > len(label) {
			return dst[:start], 0, ErrTruncated
		}
		if len(dst) > start {
			dst = append(dst, '.')
		}
		dst = appendLabel(dst, label[:c])
		off += 1 + c
	}
}

// appendLabel appends one label, lower-cased, with the escapes DNSQueryName
// documents.
func appendLabel(dst, label []byte) []byte {
	for _, b := range label {
		switch {
		case 'A' <= b && b <= 'Z':
			dst = append(dst, b+('a'-'A'))
		case b <= ' ' || b >= 0x7f || b == '.' || b == '\\':
			dst = append(dst, '\\', '0'+b/100, '0'+b/10%10, '0'+b%10)
		default:
			dst = append(dst, b)
		}
	}
	return dst
}
