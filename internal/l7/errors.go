package l7

import "errors"

// Sentinel errors returned by the parsers. They are values, not wrapped, so
// that the per-packet path can compare them without allocating.
var (
	// ErrIncomplete reports that the message or record continues in a later
	// segment: the bytes seen so far neither contain the answer nor prove it
	// absent.
	ErrIncomplete = errors.New("l7: message continues in a later segment")

	// ErrNotQuery reports a DNS message with QR=1 (a response).
	ErrNotQuery = errors.New("l7: dns: not a query")
	// ErrNoQuestion reports a DNS query whose QDCOUNT is zero.
	ErrNoQuestion = errors.New("l7: dns: query has no question")
	// ErrTruncated reports a DNS message that ends inside its header or first
	// question.
	ErrTruncated = errors.New("l7: dns: truncated message")
	// ErrPointer reports a name that follows more compression pointers than
	// any real name needs: a loop.
	ErrPointer = errors.New("l7: dns: bad compression pointer")
	// ErrLabelTooLong reports a label length byte above 63 that is not a
	// compression pointer (RFC 1035 lengths, RFC 6891 reserved types 0x40 and
	// 0x80).
	ErrLabelTooLong = errors.New("l7: dns: label longer than 63 bytes")
	// ErrNameTooLong reports a name longer than 255 bytes on the wire
	// (253 characters in dotted form).
	ErrNameTooLong = errors.New("l7: dns: name longer than 255 bytes")

	// ErrNotTLS reports a stream that does not start with a TLS handshake
	// record carrying a ClientHello.
	ErrNotTLS = errors.New("l7: tls: not a ClientHello")
	// ErrMalformed reports a ClientHello whose length fields contradict
	// each other; a server would reject it too.
	ErrMalformed = errors.New("l7: tls: malformed ClientHello")
	// ErrNoSNI reports a complete ClientHello without a host_name
	// server_name.
	ErrNoSNI = errors.New("l7: tls: no server name")
)
