package quic

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/fwagent/fwagent/internal/l7"
)

func checkAssembler(t *testing.T, a *Assembler, st l7.NameState, name []byte) {
	t.Helper()
	switch st {
	case l7.NameFound:
		if len(name) == 0 || len(name) > MaxName || !bytes.Equal(name, a.Name()) {
			t.Fatalf("found %q (Name %q)", name, a.Name())
		}
	case l7.NameAbsent, l7.NameFailed:
		if a.Err() == nil || name != nil {
			t.Fatalf("state %d with err %v, name %q", st, a.Err(), name)
		}
	case l7.NameUnknown, l7.NamePending:
		if name != nil || a.Err() != nil {
			t.Fatalf("state %d with name %q, err %v", st, name, a.Err())
		}
	default:
		t.Fatalf("state %d", st)
	}
	// Bounded memory: the hello buffer and one packet's scratch.
	if a.Size() > MaxHello+65536+1024 || cap(a.hello) > MaxHello {
		t.Fatalf("Size %d, hello cap %d", a.Size(), cap(a.hello))
	}
}

// FuzzFeed feeds raw datagrams: headers, lengths and coalescing are the
// attack surface before decryption.
func FuzzFeed(f *testing.F) {
	f.Add(readHex(f, "rfc9001-client-initial.hex"))
	f.Add(readHex(f, "rfc9369-client-initial.hex"))
	pkts, _ := ClientInitial(Version1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, clientHello("fuzz.example", 10, 10))
	f.Add(pkts[0])
	f.Add(append(bytes.Clone(pkts[0][:40]), pkts[0]...))
	f.Add([]byte{0xc0, 0, 0, 0, 1, 0, 0, 0, 0x40, 0x20})
	f.Add([]byte{0x40, 1, 2, 3})
	f.Fuzz(func(t *testing.T, dgram []byte) {
		var a Assembler
		st, name := a.Feed(dgram)
		checkAssembler(t, &a, st, name)
		st2, name2 := a.Feed(dgram)
		checkAssembler(t, &a, st2, name2)
		if st == l7.NameFound && (st2 != st || !bytes.Equal(name, name2)) {
			t.Fatalf("decided state changed: %d %q -> %d %q", st, name, st2, name2)
		}
		_, _ = ServerName(dgram)
		_ = HasInitial(dgram)
		if a.NewConnection(dgram) && st > l7.NameUnknown {
			// Only a datagram with keys of another connection ID
			// is a new connection; one this Assembler read is not.
			var b Assembler
			b.Feed(dgram)
			if b.keyIDLen == a.keyIDLen && bytes.Equal(b.keyID[:b.keyIDLen], a.keyID[:a.keyIDLen]) && b.keyVersion == a.keyVersion {
				t.Fatal("NewConnection for the connection's own packet")
			}
		}
	})
}

// FuzzFrames seals the input as the plaintext of Initial packets (split at
// the positions the second argument picks), so that the frame parser and
// the reassembly see every byte pattern, not only ones that decrypt.
func FuzzFrames(f *testing.F) {
	hello := clientHello("frames.example", 1200, 100)
	f.Add(AppendCrypto(nil, 0, hello[:800]), uint16(0))
	f.Add(append(AppendCrypto([]byte{framePing}, 800, hello[800:]), AppendCrypto(nil, 0, hello[:800])...), uint16(900))
	f.Add([]byte{frameACKECN, 5, 0, 1, 0, 1, 1, 2, 3, 4, frameConnClose, 1, 2, 0}, uint16(3))
	f.Add(AppendCrypto(nil, MaxHello-1, []byte{1, 2}), uint16(0))
	f.Fuzz(func(t *testing.T, plain []byte, cut uint16) {
		if len(plain) > 8000 {
			return
		}
		parts := [][]byte{plain}
		if c := int(cut); c > 0 && c < len(plain) {
			parts = [][]byte{plain[c:], plain[:c]}
		}
		var a Assembler
		for i, p := range parts {
			pkt, err := SealInitial(nil, Version1, rfcDCID, nil, uint32(i), p)
			if err != nil {
				t.Fatal(err)
			}
			st, name := a.Feed(pkt)
			checkAssembler(t, &a, st, name)
		}
	})
}

// FuzzReassembly is a differential test: a hello cut into CRYPTO frames,
// scattered over packets in any order, yields what the whole message
// parsed at once yields.
func FuzzReassembly(f *testing.F) {
	f.Add(clientHello("reassembly.example", 1500, 500), uint64(1), uint8(2))
	f.Add(clientHello("a.example", 0, 0), uint64(2), uint8(1))
	f.Add(clientHello("", 100, 3000), uint64(3), uint8(3))
	f.Add([]byte{1, 0, 0, 5, 3, 3}, uint64(4), uint8(1))
	f.Fuzz(func(t *testing.T, msg []byte, seed uint64, npkt uint8) {
		if len(msg) == 0 || len(msg) > 6000 {
			return
		}
		n := 1 + int(npkt)%4
		r := rand.New(rand.NewPCG(seed, seed>>32))
		var a Assembler
		var st l7.NameState
		var name []byte
		for _, p := range scatter(t, r, Version1, msg, n) {
			st, name = a.Feed(p)
			checkAssembler(t, &a, st, name)
		}
		whole, err := l7.HandshakeServerName(msg)
		total, lerr := l7.HandshakeLen(msg)
		switch {
		case err == nil && total <= MaxHello:
			if len(whole) > MaxName {
				whole = whole[len(whole)-MaxName:]
			}
			if st != l7.NameFound || !bytes.Equal(name, whole) {
				t.Fatalf("whole hello names %q; reassembled: state %d %q %v", whole, st, name, a.Err())
			}
		case st == l7.NameFound:
			// Decided early, from the bytes up to the name; the whole
			// message can only be wrong further on.
			if err != l7.ErrMalformed && err != l7.ErrIncomplete || lerr != nil {
				t.Fatalf("reassembled %q, whole: %v", name, err)
			}
			got, perr := l7.HandshakeServerName(msg[:min(len(msg), total)])
			if perr == nil && !bytes.Equal(got, name) {
				t.Fatalf("reassembled %q, whole %q", name, got)
			}
		}
	})
}
