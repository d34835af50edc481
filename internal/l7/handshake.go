package l7

// HandshakeServerName is TLSServerName for a bare handshake message, without
// the TLS record header: the form in which QUIC carries the ClientHello in
// its CRYPTO frames (RFC 9001 section 4). msg holds the first bytes of the
// message (type, 24-bit length, body), possibly not all of them yet.
//
// It returns the same errors as TLSServerName: ErrIncomplete while the bytes
// present neither hold the name nor prove it absent, ErrNotTLS when the
// message is not a ClientHello, ErrMalformed, ErrNoSNI. The result is a
// subslice of msg. It allocates nothing.
func HandshakeServerName(msg []byte) ([]byte, error) {
	n, err := HandshakeLen(msg)
	if err != nil {
		return nil, err
	}
	have := msg[tlsHandshakeHeader:]
	if body := n - tlsHandshakeHeader; len(have) > body {
		have = have[:body]
	}
	return clientHelloServerName(have, n-tlsHandshakeHeader)
}

// HandshakeLen returns how many bytes the ClientHello handshake message at
// the start of msg spans, its 4-byte header included: what a reassembler
// must collect before the hello is complete. ErrIncomplete before the
// header is present, ErrNotTLS when the message is not a ClientHello.
func HandshakeLen(msg []byte) (int, error) {
	if len(msg) > 0 && msg[0] != tlsClientHello {
		return 0, ErrNotTLS
	}
	if len(msg) < tlsHandshakeHeader {
		return 0, ErrIncomplete
	}
	return tlsHandshakeHeader + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])), nil
}
