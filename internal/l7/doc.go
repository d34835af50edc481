// Package l7 extracts the names and bytes that policy rules match above the
// transport layer: the query name of a DNS question, the server_name of a TLS
// ClientHello, a byte string inside a payload window, and whether a name
// falls under a set of name patterns.
//
// Everything here runs on untrusted packet bytes in the per-packet path, so
// every parser checks each length against both its parent's declared length
// and the bytes actually present, never panics, and allocates nothing when
// the caller supplies a buffer with enough capacity.
//
// All of it is best effort against a cooperating or careless client, like
// every name-based filter: a client that wants to hide a name can split a
// ClientHello across TCP segments, encrypt its ClientHello (ECH), or use
// another resolver protocol. The parsers report such cases (ErrIncomplete)
// instead of guessing, and the rule simply does not match.
package l7
