// Package quic finds the TLS server name in the Initial packets a QUIC
// client sends, for QUIC version 1 (RFC 9000, RFC 9001) and version 2
// (RFC 9369).
//
// A client's Initial packets are encrypted with keys anyone can derive from
// the packet's Destination Connection ID (RFC 9001 section 5.2), so an
// on-path observer can read them: this package derives those keys, removes
// header protection, decrypts the payload, walks its frames, and puts the
// CRYPTO frames' bytes back in order until the ClientHello they carry yields
// its server_name (parsed by package l7). Browsers spread a ClientHello with
// post-quantum key shares over two or more Initial packets, with CRYPTO
// frames in any order; an Assembler, owned by the caller per flow, collects
// them within fixed bounds (MaxHello bytes, MaxPackets packets).
//
// Everything here runs on untrusted bytes in the per-packet path: no I/O,
// every length is checked, nothing panics, and an Assembler allocates only
// when it first needs a buffer or a new connection ID's keys. SealInitial is
// the inverse, small and used by tests and the policy test runner to build
// real Initial packets.
package quic
