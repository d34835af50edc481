package l7

// TLSHelloLimit is the most stream bytes a ClientHello may span for
// TLSHelloName: one TLS record of the largest plaintext size (RFC 8446
// section 5.1) with its header. Browsers' hellos with post-quantum key
// shares are a few KiB; a larger one would need a second record, which no
// client sends.
const TLSHelloLimit = tlsRecordHeaderLen + tlsMaxPlaintext

// TLSHelloName reads the ClientHello at the start of b, the first bytes a
// client sent on a TCP stream, reassembled in order, and says how far it got:
//
//   - NameFound: the hello's host_name is name (a subslice of b), as soon
//     as the bytes so far hold it: later bytes of a hello cannot change its
//     name (a second one is malformed, and servers refuse it), so waiting for
//     the rest of the record would only let a client that lies about the
//     record's length delay the decision;
//   - NamePending: the record is not complete yet and holds no name so far;
//   - NameAbsent: the stream does not start with a ClientHello, or the
//     complete hello has no host_name;
//   - NameFailed: the hello is malformed, or continues in a second record.
func TLSHelloName(b []byte) (name []byte, st NameState) {
	n, err := TLSRecordLen(b)
	switch {
	case err == ErrNotTLS:
		return nil, NameAbsent
	case err == ErrMalformed:
		return nil, NameFailed
	case len(b) > tlsRecordHeaderLen && b[tlsRecordHeaderLen] != tlsClientHello:
		return nil, NameAbsent
	case err == ErrIncomplete:
		return nil, NamePending
	}
	name, err = TLSServerName(b[:min(n, len(b))])
	switch {
	case err == nil:
		return name, NameFound
	case err == ErrIncomplete && len(b) < n:
		return nil, NamePending
	case err == ErrNoSNI || err == ErrNotTLS:
		return nil, NameAbsent
	}
	// ErrMalformed, or ErrIncomplete with the whole record present: the
	// hello goes on in another record.
	return nil, NameFailed
}
