package l7

import "encoding/binary"

const (
	tlsRecordHeaderLen   = 5
	tlsRecordHandshake   = 22
	tlsHandshakeHeader   = 4
	tlsClientHello       = 1
	tlsMaxPlaintext      = 1 << 14 // RFC 8446 section 5.1
	tlsRandomAndVersion  = 2 + 32
	tlsMaxSessionID      = 32
	tlsExtServerName     = 0
	tlsServerNameHost    = 0
	tlsMaxRecordMinorVer = 4 // 3.4 is the highest legacy_record_version seen in the wild
)

// TLSServerName returns the host_name of the server_name extension (RFC 6066
// section 3) of the ClientHello at the start of payload, the first bytes a
// client sent on a TCP connection. The result is a subslice of payload, as
// sent (use ToLowerASCII or let NameMatcher fold case).
//
// Every length field is checked against its parent's declared length
// (ErrMalformed when it lies) and against the bytes present. When the bytes
// run out before the server name is found, the result is ErrIncomplete: the
// ClientHello continues in a later segment, or in a later record (a
// ClientHello split across records). Such a hello falls through: this
// function never reassembles, so a caller that wants a name for it must
// buffer the stream and call again. Modern hellos with post-quantum key
// shares are larger than one segment, so this is common; when the name comes
// early enough it is still returned.
//
// Errors: ErrNotTLS (not a handshake record or not a ClientHello),
// ErrMalformed, ErrIncomplete, ErrNoSNI (a complete hello without a
// host_name).
func TLSServerName(payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return nil, ErrIncomplete
	}
	if payload[0] != tlsRecordHandshake {
		return nil, ErrNotTLS
	}
	if len(payload) >= 3 && (payload[1] != 3 || payload[2] > tlsMaxRecordMinorVer) {
		return nil, ErrNotTLS
	}
	if len(payload) < tlsRecordHeaderLen+tlsHandshakeHeader {
		if len(payload) >= tlsRecordHeaderLen+1 && payload[tlsRecordHeaderLen] != tlsClientHello {
			return nil, ErrNotTLS
		}
		return nil, ErrIncomplete
	}
	recLen := int(binary.BigEndian.Uint16(payload[3:5]))
	if recLen > tlsMaxPlaintext || recLen < tlsHandshakeHeader {
		return nil, ErrMalformed
	}
	if payload[5] != tlsClientHello {
		return nil, ErrNotTLS
	}
	helloLen := int(payload[6])<<16 | int(binary.BigEndian.Uint16(payload[7:9]))

	// have is what this record holds of the hello and is present in payload;
	// bytes after the record are the next record's header, not hello bytes.
	have := payload[tlsRecordHeaderLen+tlsHandshakeHeader:]
	if rec := recLen - tlsHandshakeHeader; len(have) > rec {
		have = have[:rec]
	}
	if len(have) > helloLen {
		have = have[:helloLen]
	}
	return clientHelloServerName(have, helloLen)
}

// TLSRecordLen returns how many stream bytes the TLS handshake record at the
// start of payload spans, header included: what a caller must buffer before
// a ClientHello that TLSServerName reported as ErrIncomplete can be complete
// within one record. It needs the 5-byte header (ErrIncomplete before that)
// and reports ErrNotTLS or ErrMalformed as TLSServerName would.
func TLSRecordLen(payload []byte) (int, error) {
	if len(payload) > 0 && payload[0] != tlsRecordHandshake {
		return 0, ErrNotTLS
	}
	if len(payload) >= 3 && (payload[1] != 3 || payload[2] > tlsMaxRecordMinorVer) {
		return 0, ErrNotTLS
	}
	if len(payload) < tlsRecordHeaderLen {
		return 0, ErrIncomplete
	}
	recLen := int(binary.BigEndian.Uint16(payload[3:5]))
	if recLen > tlsMaxPlaintext || recLen < tlsHandshakeHeader {
		return 0, ErrMalformed
	}
	return tlsRecordHeaderLen + recLen, nil
}

// helloReader walks a ClientHello body of which only b is present.
type helloReader struct {
	b []byte
}

// need reports whether length bytes at off lie inside limit (a declared
// bound, so ErrMalformed if not) and inside the bytes present
// (ErrIncomplete if not).
func (r helloReader) need(off, length, limit int) error {
	switch {
	case off+length > limit:
		return ErrMalformed
	case off+length > len(r.b):
		return ErrIncomplete
	}
	return nil
}

func (r helloReader) u16(off int) int { return int(binary.BigEndian.Uint16(r.b[off : off+2])) }

// clientHelloServerName parses a ClientHello body (RFC 8446 section 4.1.2,
// RFC 5246 section 7.4.1.2) of declared length n, of which b is present.
func clientHelloServerName(b []byte, n int) ([]byte, error) {
	r := helloReader{b: b}
	off := tlsRandomAndVersion
	if err := r.need(0, off+1, n); err != nil {
		return nil, err
	}
	sid := int(b[off])
	if sid > tlsMaxSessionID {
		return nil, ErrMalformed
	}
	off += 1 + sid
	if err := r.need(off, 2, n); err != nil {
		return nil, err
	}
	suites := r.u16(off)
	if suites < 2 || suites%2 != 0 {
		return nil, ErrMalformed
	}
	off += 2 + suites
	if err := r.need(off, 1, n); err != nil {
		return nil, err
	}
	comp := int(b[off])
	if comp < 1 {
		return nil, ErrMalformed
	}
	off += 1 + comp
	if err := r.need(off, 0, n); err != nil {
		return nil, err
	}
	if off == n {
		return nil, ErrNoSNI // a hello without extensions (TLS 1.0 era)
	}
	if err := r.need(off, 2, n); err != nil {
		return nil, err
	}
	// The extension block ends the hello exactly; trailing bytes are an
	// error in every TLS stack, and checking it here catches a lying
	// hello length before the bytes run out.
	extEnd := off + 2 + r.u16(off)
	if extEnd != n {
		return nil, ErrMalformed
	}
	off += 2

	var name []byte
	for off < extEnd {
		if err := r.need(off, 4, extEnd); err != nil {
			return helloResult(name, err)
		}
		typ, length := r.u16(off), r.u16(off+2)
		off += 4
		if err := r.need(off, length, extEnd); err != nil {
			return helloResult(name, err)
		}
		if typ == tlsExtServerName {
			if name != nil {
				return nil, ErrMalformed // RFC 8446 section 4.2: no duplicate extensions
			}
			var err error
			if name, err = serverNameList(b[off : off+length]); err != nil {
				return nil, err
			}
		}
		off += length
	}
	if name == nil {
		return nil, ErrNoSNI
	}
	return name, nil
}

// helloResult decides what running out of bytes after the extension list
// started means: a name already found stands, since later bytes cannot
// change it; otherwise the error does.
func helloResult(name []byte, err error) ([]byte, error) {
	if err == ErrIncomplete && name != nil {
		return name, nil
	}
	return nil, err
}

// serverNameList returns the host_name of a server_name extension body. An
// extension with a name list but no host_name entry yields ErrNoSNI.
func serverNameList(ext []byte) ([]byte, error) {
	if len(ext) < 2 || int(binary.BigEndian.Uint16(ext)) != len(ext)-2 {
		return nil, ErrMalformed
	}
	list := ext[2:]
	var host []byte
	for len(list) > 0 {
		if len(list) < 3 {
			return nil, ErrMalformed
		}
		typ, length := list[0], int(binary.BigEndian.Uint16(list[1:3]))
		list = list[3:]
		if length > len(list) {
			return nil, ErrMalformed
		}
		if typ == tlsServerNameHost {
			// RFC 6066 section 3: at most one name of a type, and a
			// HostName is at least one byte.
			if host != nil || length == 0 {
				return nil, ErrMalformed
			}
			host = list[:length:length]
		}
		list = list[length:]
	}
	if host == nil {
		return nil, ErrNoSNI
	}
	return host, nil
}

// ToLowerASCII appends src to dst with ASCII upper case letters folded to
// lower case and every other byte unchanged, and returns the extended slice.
func ToLowerASCII(dst, src []byte) []byte {
	for _, c := range src {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
