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
//   - NamePending: the record is not complete yet (or not even its header);
//   - NameFound: the whole record is here and its host_name is name (a
//     subslice of b);
//   - NameAbsent: the stream does not start with a ClientHello, or the
//     complete hello has no host_name;
//   - NameFailed: the hello is malformed, or continues in a second record.
//
// Unlike TLSServerName it waits for the whole record even when the name
// came early: the hello is decided once, on the segment that completes it.
func TLSHelloName(b []byte) (name []byte, st NameState) {
	n, err := TLSRecordLen(b)
	switch {
	case err == ErrNotTLS:
		return nil, NameAbsent
	case err == ErrMalformed:
		return nil, NameFailed
	case len(b) > tlsRecordHeaderLen && b[tlsRecordHeaderLen] != tlsClientHello:
		return nil, NameAbsent
	case err == ErrIncomplete || len(b) < n:
		return nil, NamePending
	}
	name, err = TLSServerName(b[:n])
	switch err {
	case nil:
		return name, NameFound
	case ErrNoSNI, ErrNotTLS:
		return nil, NameAbsent
	}
	// ErrMalformed, or ErrIncomplete with the whole record present: the
	// hello goes on in another record.
	return nil, NameFailed
}
