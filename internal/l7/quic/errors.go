package quic

import "errors"

// Sentinel errors, compared without allocating on the per-packet path.
var (
	// ErrNotInitial reports a datagram that does not start with a
	// long-header Initial packet of a version this package reads.
	ErrNotInitial = errors.New("quic: not a client Initial of QUIC v1 or v2")
	// ErrMalformed reports a packet or frame whose lengths contradict each
	// other or run past the datagram.
	ErrMalformed = errors.New("quic: malformed packet")
	// ErrDecrypt reports an Initial packet that does not authenticate with
	// the keys of its connection ID: not what the client sent, or not a
	// client Initial at all.
	ErrDecrypt = errors.New("quic: Initial packet does not decrypt")
	// ErrFrame reports a frame type that may not appear in a client Initial
	// (RFC 9000 section 12.4), or one this package does not know.
	ErrFrame = errors.New("quic: unexpected frame in Initial packet")
	// ErrTooLarge reports CRYPTO data beyond MaxHello bytes.
	ErrTooLarge = errors.New("quic: ClientHello larger than the reassembly bound")
	// ErrFragmented reports CRYPTO data in more disjoint pieces than the
	// Assembler tracks.
	ErrFragmented = errors.New("quic: ClientHello in too many fragments")
	// ErrAbandoned reports a reassembly its owner gave up on (Abandon).
	ErrAbandoned = errors.New("quic: reassembly abandoned")
	// ErrTooManyPackets reports a ClientHello still incomplete after
	// MaxPackets Initial packets.
	ErrTooManyPackets = errors.New("quic: ClientHello incomplete after too many packets")
)
