// Package l7 extracts the names and bytes that policy rules match above the
// transport layer: the query names of DNS questions, the server_name of a TLS
// ClientHello, the hosts of HTTP/1.x requests, a byte string inside a payload
// window, and whether a name falls under a set of name patterns.
//
// Everything here runs on untrusted packet bytes in the per-packet path, so
// every parser checks each length against both its parent's declared length
// and the bytes actually present, never panics, and allocates nothing when
// the caller supplies a buffer with enough capacity.
//
// Stream puts one direction of a TCP stream back in order by sequence
// number, within bounds, for the readers that need more than one segment:
// TLSHelloName (a ClientHello split across segments), DNSReader (DNS over
// TCP, RFC 7766) and HTTPReader (every request head of an HTTP/1.x
// connection). The pipeline owns the per-flow Streams; this package only
// parses.
//
// All of it is best effort against a cooperating or careless client, like
// every name-based filter: a client that wants to hide a name can encrypt its
// ClientHello (ECH), use another resolver protocol, or push a stream past the
// bounds. The parsers report such cases instead of guessing, and the rule
// simply does not match.
package l7
