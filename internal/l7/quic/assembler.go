package quic

import (
	"bytes"
	"unsafe"

	"github.com/fwagent/fwagent/internal/l7"
)

const (
	// MaxHello bounds the ClientHello message (header included) an
	// Assembler collects: TLS's record limit, far above the ~2 KB of a
	// browser's hello with post-quantum key shares.
	MaxHello = 16 << 10
	// MaxPackets bounds the Initial packets an Assembler reads before it
	// gives up on a hello that never completes. Browsers use two or three.
	MaxPackets = 8
	// maxFragments bounds the disjoint pieces of the CRYPTO stream held at
	// once. Chromium cuts its hello into several CRYPTO frames per packet,
	// interleaved with PADDING and PING; adjacent pieces merge, so a few
	// dozen cover any real client.
	maxFragments = 32
	// MaxName is what is kept of a name: the longest DNS name plus the
	// byte l7.NameMatcher reads to tell a longer name from it.
	MaxName = 254
)

// span is a received range [lo, hi) of the CRYPTO stream.
type span struct{ lo, hi int }

// Assembler collects the ClientHello of one QUIC connection from the client's
// Initial packets. The zero value is ready; one Assembler serves one flow
// (one client 5-tuple), and is not safe for concurrent use.
type Assembler struct {
	state l7.NameState
	err   error
	// name holds the server name once found, copied out of hello so that
	// Release can drop the buffers and keep the answer.
	nameBuf [MaxName]byte
	nameLen int

	// hello is the CRYPTO stream from offset 0; its length is the highest
	// offset received, and only bytes inside frags are valid.
	hello []byte
	frags [maxFragments]span
	nfrag int
	// total is the hello's length from its header, 0 until known.
	total   int
	packets int

	scratch []byte
	work    openWork

	// keys are those of keyVersion and the connection ID in keyID, the
	// client's first Destination Connection ID. Every Initial of a
	// connection uses them, also after the client switched to the
	// server's connection ID (RFC 9001 section 5.2); only a Retry changes
	// them. They are derived once.
	keys       initialKeys
	hasKeys    bool
	keyVersion uint32
	keyID      [maxConnIDLen]byte
	keyIDLen   int
}

// State is where the hello stands: NameUnknown before the first Initial
// packet, then NamePending until NameFound, NameAbsent or NameFailed.
func (a *Assembler) State() l7.NameState { return a.state }

// Name is the server name when State is NameFound, as sent (case not
// folded), at most its last 254 bytes. It is valid until Reset.
func (a *Assembler) Name() []byte {
	if a.state != l7.NameFound {
		return nil
	}
	return a.nameBuf[:a.nameLen]
}

// Err says why the state is NameAbsent or NameFailed (an l7 or quic
// sentinel error), nil otherwise.
func (a *Assembler) Err() error { return a.err }

// keysSize estimates what the AES and GCM states of a key set hold.
const keysSize = 1024

// Size is the memory the Assembler holds, in bytes: itself, its buffers and
// its keys. A caller that keeps many counts this against its cap.
func (a *Assembler) Size() int {
	n := int(unsafe.Sizeof(*a)) + cap(a.hello) + cap(a.scratch)
	if a.hasKeys {
		n += keysSize
	}
	return n
}

// Release frees the buffers of a decided Assembler and keeps its answer
// (State, Name, Err) and the connection's keys, for NewConnection. Feeding
// it afterwards changes nothing.
func (a *Assembler) Release() {
	a.hello, a.scratch = nil, nil
}

// NewConnection reports whether the datagram's first Initial packet belongs
// to another connection than the one the Assembler follows: it does not
// decrypt with this connection's keys but does with those of its own
// Destination Connection ID. That is a new connection from the same client
// address and port (a reused socket), or the same one restarted after a
// Retry; either way its ClientHello starts anew, and the caller should
// Reset before feeding it. Packets the client sends after switching to the
// server's connection ID still decrypt with the old keys, so they are not
// new. It allocates only for an Initial with another connection ID.
func (a *Assembler) NewConnection(datagram []byte) bool {
	if !a.hasKeys || len(datagram) < MinInitialSize {
		return false // a server discards it: no connection starts
	}
	for b := datagram; len(b) > 0; {
		h, v, err := parseLongHeader(b)
		if err != nil {
			return false
		}
		pkt := b[:h.end]
		b = b[h.end:]
		if h.typ != typeInitial {
			continue
		}
		if h.version == a.keyVersion && bytes.Equal(h.dcid, a.keyID[:a.keyIDLen]) {
			return false
		}
		scratch, w := make([]byte, len(pkt)), new(openWork)
		if h.version == a.keyVersion {
			if _, err := openInitial(pkt, &h, &a.keys, scratch, w); err == nil {
				return false
			}
		}
		k, err := clientInitialKeys(v, h.dcid)
		if err != nil {
			return false
		}
		_, err = openInitial(pkt, &h, &k, scratch, w)
		return err == nil
	}
	return false
}

// Abandon gives up on the hello: the state becomes NameFailed (Err
// ErrAbandoned) and the buffers are freed. An owner that runs out of room
// calls it.
func (a *Assembler) Abandon() {
	if a.state <= l7.NamePending {
		a.fail(l7.NameFailed, ErrAbandoned)
	}
}

// Reset makes the Assembler ready for a new connection, keeping its
// buffers.
func (a *Assembler) Reset() {
	hello, scratch := a.hello[:0], a.scratch[:0]
	*a = Assembler{hello: hello, scratch: scratch}
}

// Feed reads one UDP datagram the client sent: every Initial packet in it
// (coalesced packets included) is decrypted and its CRYPTO frames added to
// the hello. It returns the state after the datagram and the name when
// found (as Name). A datagram without an Initial packet of version 1 or 2,
// or shorter than MinInitialSize, leaves the state as it was; so does an
// Initial that does not decrypt (the server drops those too). Once the
// state is decided, Feed does nothing. Initials under the keys of another
// connection ID (a Retry) are read too; a caller that may see several
// connections on one flow asks NewConnection first and Resets.
func (a *Assembler) Feed(datagram []byte) (l7.NameState, []byte) {
	if a.state > l7.NamePending || len(datagram) < MinInitialSize {
		// Servers discard a client Initial in a smaller datagram
		// (RFC 9000 section 14.1); so must this reader, or a client
		// could show it a hello the server never reads.
		return a.state, a.Name()
	}
	b := datagram
	sawInitial := false
	for len(b) > 0 {
		h, v, err := parseLongHeader(b)
		if err != nil {
			// Short headers, Retry and unknown versions run to the
			// end of the datagram. A malformed Initial does too: the
			// server discards the rest of such a datagram as well.
			break
		}
		pkt := b[:h.end]
		b = b[h.end:]
		if h.typ != typeInitial {
			continue
		}
		if !sawInitial {
			sawInitial = true
			a.packets++
			a.state = l7.NamePending
		}
		if err := a.addInitial(pkt, &h, v); err != nil {
			if err == ErrDecrypt {
				continue
			}
			a.fail(l7.NameFailed, err)
			return a.state, nil
		}
	}
	if a.state == l7.NamePending && sawInitial {
		a.evaluate()
		if a.state == l7.NamePending && a.packets >= MaxPackets {
			a.fail(l7.NameFailed, ErrTooManyPackets)
		}
	}
	return a.state, a.Name()
}

func (a *Assembler) fail(st l7.NameState, err error) {
	a.state, a.err = st, err
	a.Release()
}

// addInitial decrypts one Initial packet and adds its CRYPTO frames. A
// packet that does not decrypt is ErrDecrypt, and its frames are not read;
// any other error is the client's own and ends the reassembly.
func (a *Assembler) addInitial(pkt []byte, h *longHeader, v *versionInfo) error {
	if cap(a.scratch) < len(pkt) {
		a.scratch = make([]byte, len(pkt))
	}
	scratch := a.scratch[:cap(a.scratch)]
	same := a.hasKeys && a.keyVersion == h.version
	var frames []byte
	err := ErrDecrypt
	if same {
		// Also for another connection ID: the client's later Initials
		// carry the server's, under the keys of its first.
		frames, err = openInitial(pkt, h, &a.keys, scratch, &a.work)
	}
	if err != nil && (!same || !bytes.Equal(a.keyID[:a.keyIDLen], h.dcid)) {
		k, kerr := clientInitialKeys(v, h.dcid)
		if kerr != nil {
			return kerr
		}
		if frames, err = openInitial(pkt, h, &k, scratch, &a.work); err == nil {
			a.keys, a.hasKeys, a.keyVersion = k, true, h.version
			a.keyIDLen = copy(a.keyID[:], h.dcid)
		}
	}
	if err != nil {
		// Too short to sample or failing authentication: either way
		// the server cannot read it and drops it.
		return ErrDecrypt
	}
	return a.frames(frames)
}

// Frame types a client Initial may carry (RFC 9000 section 12.4, table 3).
const (
	framePadding    = 0x00
	framePing       = 0x01
	frameACK        = 0x02
	frameACKECN     = 0x03
	frameCrypto     = 0x06
	frameConnClose  = 0x1c
	maxVarintFields = 3 // ECN counts after an ACK's ranges
)

// frames walks a decrypted Initial payload. Frame types are varints that
// must use their shortest encoding (RFC 9000 section 12.4), so every type
// allowed here is one byte.
func (a *Assembler) frames(p []byte) error {
	for len(p) > 0 {
		switch p[0] {
		case framePadding:
			p = bytes.TrimLeft(p, "\x00")
		case framePing:
			p = p[1:]
		case frameACK, frameACKECN:
			var err error
			if p, err = skipACK(p); err != nil {
				return err
			}
		case frameCrypto:
			off, n1 := varint(p[1:])
			if n1 == 0 {
				return ErrMalformed
			}
			length, n2 := varint(p[1+n1:])
			start := 1 + n1 + n2
			if n2 == 0 || length > uint64(len(p)-start) {
				return ErrMalformed
			}
			if off > MaxHello || length > MaxHello-off {
				return ErrTooLarge
			}
			if err := a.add(int(off), p[start:start+int(length)]); err != nil {
				return err
			}
			p = p[start+int(length):]
		case frameConnClose:
			// A client that closes during its first flight: skip the
			// error code, frame type and reason.
			q := p[1:]
			for range 2 {
				_, n := varint(q)
				if n == 0 {
					return ErrMalformed
				}
				q = q[n:]
			}
			rl, n := varint(q)
			if n == 0 || rl > uint64(len(q)-n) {
				return ErrMalformed
			}
			p = q[n+int(rl):]
		default:
			return ErrFrame
		}
	}
	return nil
}

// skipACK returns what follows the ACK frame at the start of p (RFC 9000
// section 19.3).
func skipACK(p []byte) ([]byte, error) {
	ecn := p[0] == frameACKECN
	q := p[1:]
	var ranges uint64
	for i := range 4 { // largest, delay, range count, first range
		v, n := varint(q)
		if n == 0 {
			return nil, ErrMalformed
		}
		if i == 2 {
			ranges = v
		}
		q = q[n:]
	}
	// Each further range is two varints of at least one byte.
	if ranges > uint64(len(q))/2 {
		return nil, ErrMalformed
	}
	fields := 2 * int(ranges)
	if ecn {
		fields += maxVarintFields
	}
	for range fields {
		_, n := varint(q)
		if n == 0 {
			return nil, ErrMalformed
		}
		q = q[n:]
	}
	return q, nil
}

// add stores CRYPTO stream bytes data at offset off. Bytes already received
// are kept as first received, as a QUIC stack's reassembly keeps them, so
// the name read here is the one the server reads.
func (a *Assembler) add(off int, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	lo, hi := off, off+len(data)
	if a.total > 0 && lo >= a.total {
		return nil // past the hello: nothing else shares the client's Initial stream
	}
	if hi > len(a.hello) {
		if hi > cap(a.hello) {
			grown := make([]byte, len(a.hello), min(MaxHello, max(2*cap(a.hello), hi, 2048)))
			copy(grown, a.hello)
			a.hello = grown
		}
		a.hello = a.hello[:hi]
	}
	// Copy only into the gaps between spans already held.
	cur := lo
	for _, s := range a.frags[:a.nfrag] {
		if s.hi <= cur || s.lo >= hi {
			continue
		}
		if s.lo > cur {
			copy(a.hello[cur:s.lo], data[cur-off:])
		}
		cur = max(cur, s.hi)
	}
	if cur < hi {
		copy(a.hello[cur:hi], data[cur-off:])
	}
	return a.merge(lo, hi)
}

// merge adds [lo, hi) to the sorted, disjoint, non-adjacent frags.
func (a *Assembler) merge(lo, hi int) error {
	i := 0
	for i < a.nfrag && a.frags[i].hi < lo {
		i++
	}
	j := i
	for j < a.nfrag && a.frags[j].lo <= hi {
		lo, hi = min(lo, a.frags[j].lo), max(hi, a.frags[j].hi)
		j++
	}
	if i == j { // no overlap: insert at i
		if a.nfrag == maxFragments {
			return ErrFragmented
		}
		copy(a.frags[i+1:a.nfrag+1], a.frags[i:a.nfrag])
		a.nfrag++
	} else { // frags[i:j] collapse into one
		copy(a.frags[i+1:], a.frags[j:a.nfrag])
		a.nfrag -= j - i - 1
	}
	a.frags[i] = span{lo, hi}
	return nil
}

// evaluate parses what is contiguous from offset 0: once the bytes before
// the server_name extension are in, the name cannot change, so the state is
// decided without waiting for the rest of the hello.
func (a *Assembler) evaluate() {
	if a.nfrag == 0 || a.frags[0].lo != 0 {
		return
	}
	have := a.hello[:a.frags[0].hi]
	if a.total == 0 {
		n, err := l7.HandshakeLen(have)
		switch {
		case err == l7.ErrIncomplete:
			return
		case err != nil:
			a.fail(l7.NameAbsent, err)
			return
		case n > MaxHello:
			a.fail(l7.NameFailed, ErrTooLarge)
			return
		}
		a.total = n
	}
	name, err := l7.HandshakeServerName(have)
	switch err {
	case nil:
		if len(name) > MaxName {
			name = name[len(name)-MaxName:]
		}
		a.nameLen = copy(a.nameBuf[:], name)
		a.state = l7.NameFound
		a.Release()
	case l7.ErrIncomplete:
		if len(have) >= a.total {
			a.fail(l7.NameFailed, l7.ErrMalformed)
		}
	case l7.ErrNoSNI, l7.ErrNotTLS:
		a.fail(l7.NameAbsent, err)
	default:
		a.fail(l7.NameFailed, err)
	}
}

// HasInitial reports whether the datagram holds a long-header Initial packet
// of version 1 or 2 (not whether it decrypts): a cheap test of whether
// Feed or ServerName can learn anything from it. It allocates nothing.
func HasInitial(datagram []byte) bool {
	if len(datagram) < MinInitialSize || datagram[0]&formLong == 0 {
		return false // the bulk of a connection: short headers
	}
	for b := datagram; len(b) > 0; {
		h, _, err := parseLongHeader(b)
		if err != nil {
			return false
		}
		if h.typ == typeInitial {
			return true
		}
		b = b[h.end:]
	}
	return false
}

// ServerName reads the server name from the Initial packets of one datagram
// alone, as a single-packet parser: what Feed would find for a connection
// whose whole ClientHello came in this datagram. Errors: ErrNotInitial when
// the datagram holds no Initial packet (or none decrypts), l7.ErrIncomplete
// when the hello continues in another datagram, and the reasons Err gives.
// It allocates its buffers and keys each call; use an Assembler per flow on
// a hot path.
func ServerName(datagram []byte) ([]byte, error) {
	if !HasInitial(datagram) {
		return nil, ErrNotInitial
	}
	a := new(Assembler)
	st, name := a.Feed(datagram)
	switch st {
	case l7.NameFound:
		return name, nil
	case l7.NameUnknown:
		return nil, ErrNotInitial
	case l7.NamePending:
		if a.nfrag == 0 {
			return nil, ErrNotInitial
		}
		return nil, l7.ErrIncomplete
	}
	return nil, a.Err()
}
