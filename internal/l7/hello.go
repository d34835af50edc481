package l7

// NameState says how far the pipeline's per-flow reassembly got in finding a
// TLS server name (from a TCP ClientHello or from QUIC Initial CRYPTO frames)
// for the flow of the packet being decided.
type NameState uint8

const (
	// NameUnknown: no reassembly ran for this packet; decide from the
	// packet's own payload, as a single-packet parser would.
	NameUnknown NameState = iota
	// NamePending: the hello has started but is not complete yet.
	NamePending
	// NameFound: the server name is known (Input.ServerName).
	NameFound
	// NameAbsent: the hello is complete and has no server name, or the
	// flow's first bytes are not a TLS/QUIC hello.
	NameAbsent
	// NameFailed: reassembly gave up (bounds exceeded, malformed).
	NameFailed
)
