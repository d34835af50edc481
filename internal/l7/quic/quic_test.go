package quic

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/fwagent/fwagent/internal/l7"
)

// The client Initial of RFC 9001 Appendix A.2 and RFC 9369 Appendix A.2:
// the same ClientHello for example.com, protected for each version.
func TestRFCClientInitial(t *testing.T) {
	crypto := readHex(t, "rfc9001-client-crypto.hex")
	for _, tt := range []struct {
		name string
		v    uint32
		file string
	}{
		{"v1", Version1, "rfc9001-client-initial.hex"},
		{"v2", Version2, "rfc9369-client-initial.hex"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pkt := readHex(t, tt.file)
			orig := bytes.Clone(pkt)

			h, v, err := parseLongHeader(pkt)
			if err != nil || h.version != tt.v || h.typ != typeInitial || !bytes.Equal(h.dcid, rfcDCID) || h.end != len(pkt) {
				t.Fatalf("header = %+v, %v", h, err)
			}
			k, err := clientInitialKeys(v, h.dcid)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := openInitial(pkt, &h, &k, make([]byte, len(pkt)), new(openWork))
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !bytes.Equal(plain[:len(crypto)], crypto) || len(bytes.Trim(plain[len(crypto):], "\x00")) != 0 || len(plain) != 1162 {
				t.Fatalf("payload is not the RFC's CRYPTO frame and padding: %x", plain[:64])
			}
			if !bytes.Equal(pkt, orig) {
				t.Fatal("openInitial changed the packet")
			}

			name, err := ServerName(pkt)
			if err != nil || string(name) != "example.com" {
				t.Fatalf("ServerName = %q, %v", name, err)
			}

			// The encoder reproduces the RFC's packet byte for byte.
			sealed, err := SealInitial(nil, tt.v, rfcDCID, nil, 2, crypto)
			if err != nil || !bytes.Equal(sealed, pkt) {
				t.Fatalf("SealInitial differs from the RFC (%v):\n%x\n%x", err, sealed[:48], pkt[:48])
			}
		})
	}
}

func TestScatteredHello(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		v := Version1
		if i%2 == 1 {
			v = Version2
		}
		// The name early, in the middle or last; hellos of ~0.3 to ~4 KB.
		hello := clientHello("Scattered.Example", r.IntN(3000), r.IntN(1500))
		npkt := 1 + r.IntN(4)
		pkts := scatter(t, r, v, hello, npkt)
		var a Assembler
		for j, p := range pkts {
			st, name := a.Feed(p)
			if st == l7.NameFound {
				if string(name) != "Scattered.Example" {
					t.Fatalf("case %d: name %q", i, name)
				}
				break
			}
			if st != l7.NamePending || j == len(pkts)-1 {
				t.Fatalf("case %d: after packet %d of %d: state %d, err %v", i, j+1, len(pkts), st, a.Err())
			}
		}
		if a.hello != nil || a.scratch != nil {
			t.Fatalf("case %d: buffers kept after the decision", i)
		}
	}
}

func TestStates(t *testing.T) {
	seal := func(t *testing.T, frames []byte) []byte {
		p, err := SealInitial(nil, Version1, rfcDCID, nil, 0, frames)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		frames  [][]byte
		want    l7.NameState
		wantErr error
	}{
		{"no sni", [][]byte{AppendCrypto(nil, 0, clientHello("", 10, 10))}, l7.NameAbsent, l7.ErrNoSNI},
		{"not a hello", [][]byte{AppendCrypto(nil, 0, []byte{2, 0, 0, 4, 1, 2, 3, 4})}, l7.NameAbsent, l7.ErrNotTLS},
		{"too large", [][]byte{AppendCrypto(nil, 0, []byte{1, 0, 0x40, 0})}, l7.NameFailed, ErrTooLarge},
		{"beyond the bound", [][]byte{AppendCrypto(nil, MaxHello, []byte{1})}, l7.NameFailed, ErrTooLarge},
		{"unknown frame", [][]byte{{0x08, 0, 0}}, l7.NameFailed, ErrFrame},
		{"bad crypto length", [][]byte{{frameCrypto, 0, 0x7f, 0xff, 1}}, l7.NameFailed, ErrMalformed},
		{"only ack and ping", [][]byte{{frameACK, 5, 0, 1, 0, 1, 1, framePing}}, l7.NamePending, nil},
		{"ack with ecn", [][]byte{append([]byte{frameACKECN, 5, 0, 0, 0, 1, 2, 3}, AppendCrypto(nil, 0, clientHello("ecn.example", 0, 0))...)}, l7.NameFound, nil},
		{"connection close", [][]byte{{frameConnClose, 0x0a, 0, 2, 'n', 'o', framePing}}, l7.NamePending, nil},
		{"truncated ack", [][]byte{{frameACK, 5, 0, 0x7f, 0xff}}, l7.NameFailed, ErrMalformed},
	}
	// More fragments than tracked: every other byte of a large hello.
	big := clientHello("frag.example", 3000, 0)
	var frag []byte
	for off := 100; off < 100+2*(maxFragments+1); off += 2 {
		frag = AppendCrypto(frag, uint64(off), big[off:off+1])
	}
	tests = append(tests, struct {
		name    string
		frames  [][]byte
		want    l7.NameState
		wantErr error
	}{"fragmented", [][]byte{frag}, l7.NameFailed, ErrFragmented})
	// A hello never completed: the first byte never comes.
	var never [][]byte
	for i := range MaxPackets {
		never = append(never, AppendCrypto(nil, uint64(1+i*10), big[1+i*10:11+i*10]))
	}
	tests = append(tests, struct {
		name    string
		frames  [][]byte
		want    l7.NameState
		wantErr error
	}{"never completes", never, l7.NameFailed, ErrTooManyPackets})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Assembler
			var st l7.NameState
			for _, f := range tt.frames {
				st, _ = a.Feed(seal(t, f))
			}
			if st != tt.want || a.Err() != tt.wantErr {
				t.Fatalf("state %d, err %v; want %d, %v", st, a.Err(), tt.want, tt.wantErr)
			}
		})
	}
}

func TestCoalesced(t *testing.T) {
	hello := clientHello("coalesced.example", 1500, 0)
	p1, _ := SealInitial(nil, Version1, rfcDCID, nil, 0, AppendCrypto(nil, 0, hello[:1000]))
	p2, _ := SealInitial(nil, Version1, rfcDCID, nil, 1, AppendCrypto(nil, 1000, hello[1000:]))

	// A 0-RTT packet (type 1 in v1) of 40 bytes, and a short-header packet.
	zeroRTT := []byte{0xd0, 0, 0, 0, 1, 8}
	zeroRTT = append(zeroRTT, rfcDCID...)
	zeroRTT = append(zeroRTT, 0, 0x40, 30)
	zeroRTT = append(zeroRTT, make([]byte, 30)...)
	short := append([]byte{0x40}, make([]byte, 50)...)

	var a Assembler
	dgram := append(append(append(bytes.Clone(zeroRTT), p2...), p1...), short...)
	if st, name := a.Feed(dgram); st != l7.NameFound || string(name) != "coalesced.example" {
		t.Fatalf("coalesced: %d %q %v", st, name, a.Err())
	}

	// A datagram of anything but Initials leaves the state alone.
	var b Assembler
	if st, _ := b.Feed(append(bytes.Clone(zeroRTT), short...)); st != l7.NameUnknown {
		t.Fatalf("no Initial: state %d", st)
	}
	if st, _ := b.Feed([]byte{0xc0, 0xff, 0, 0, 0x1d, 0, 0}); st != l7.NameUnknown {
		t.Fatalf("draft version: state %d", st)
	}
	// An Initial that does not authenticate is skipped; a later one counts.
	bad := bytes.Clone(p1)
	bad[len(bad)-1] ^= 1
	if st, _ := b.Feed(bad); st != l7.NamePending {
		t.Fatalf("bad tag: state %d", st)
	}
	b.Feed(p1)
	if st, name := b.Feed(p2); st != l7.NameFound || string(name) != "coalesced.example" {
		t.Fatalf("after a bad packet: %d %q", st, name)
	}
}

// Overlapping CRYPTO data keeps the bytes first received, as the server's
// reassembly does: a late rewrite of the name is not believed.
func TestFirstBytesWin(t *testing.T) {
	hello := clientHello("first.example", 0, 0)
	forged := bytes.Replace(bytes.Clone(hello), []byte("first"), []byte("forge"), 1)
	i := bytes.Index(hello, []byte("first"))
	p1, _ := SealInitial(nil, Version1, rfcDCID, nil, 0, AppendCrypto(nil, uint64(i), hello[i:]))
	p2, _ := SealInitial(nil, Version1, rfcDCID, nil, 1, AppendCrypto(nil, 0, forged))
	var a Assembler
	a.Feed(p1)
	if st, name := a.Feed(p2); st != l7.NameFound || string(name) != "first.example" {
		t.Fatalf("got %d %q", st, name)
	}
}

func TestRetryChangesKeys(t *testing.T) {
	hello := clientHello("retry.example", 1500, 0)
	p1, _ := SealInitial(nil, Version1, rfcDCID, nil, 0, AppendCrypto(nil, 0, hello[:1000]))
	// After a Retry the client uses the server's new connection ID.
	p2, _ := SealInitial(nil, Version1, []byte{9, 9, 9, 9, 9, 9, 9, 9, 9}, nil, 1, AppendCrypto(nil, 0, hello))
	var a Assembler
	a.Feed(p1)
	if st, name := a.Feed(p2); st != l7.NameFound || string(name) != "retry.example" {
		t.Fatalf("got %d %q %v", st, name, a.Err())
	}
}

func TestLongName(t *testing.T) {
	long := string(bytes.Repeat([]byte("a"), 300)) + ".example"
	pkts, err := ClientInitial(Version1, rfcDCID, clientHello(long, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	var a Assembler
	st, name := a.Feed(pkts[0])
	if st != l7.NameFound || len(name) != MaxName || !bytes.HasSuffix([]byte(long), name) {
		t.Fatalf("got %d, %d bytes", st, len(name))
	}
}

func TestClientInitialSplits(t *testing.T) {
	hello := clientHello("split.example", 2500, 0)
	pkts, err := ClientInitial(Version2, rfcDCID, hello)
	if err != nil || len(pkts) != 3 {
		t.Fatalf("%d packets, %v", len(pkts), err)
	}
	for _, p := range pkts {
		if len(p) < MinInitialSize {
			t.Fatalf("datagram of %d bytes", len(p))
		}
	}
	if _, err := ServerName(pkts[0]); err != l7.ErrIncomplete {
		t.Fatalf("first packet alone: %v", err)
	}
	var a Assembler
	a.Feed(pkts[2])
	a.Feed(pkts[0])
	if st, name := a.Feed(pkts[1]); st != l7.NameFound || string(name) != "split.example" {
		t.Fatalf("got %d %q", st, name)
	}
}

// Feeding a flow's later Initials costs no allocation once the keys and
// buffers exist.
func TestFeedAllocs(t *testing.T) {
	hello := clientHello("alloc.example", 1500, 0)
	p1, _ := SealInitial(nil, Version1, rfcDCID, nil, 0, AppendCrypto(nil, 1000, hello[1000:]))
	var a Assembler
	a.Feed(p1)
	if n := testing.AllocsPerRun(100, func() {
		a.packets = 1 // stay below MaxPackets: each run reads the packet
		a.Feed(p1)
	}); n != 0 {
		t.Fatalf("%v allocations per Feed", n)
	}
	if a.Size() > 4096+len(p1)+int(binary.Size(a.frags)) {
		t.Fatalf("Size %d", a.Size())
	}
}

func TestVarint(t *testing.T) {
	for _, v := range []uint64{0, 63, 64, 16383, 16384, 1<<30 - 1, 1 << 30, 1<<62 - 1} {
		b := appendVarint(nil, v)
		got, n := varint(b)
		if got != v || n != len(b) {
			t.Fatalf("%d: got %d, %d of %d bytes", v, got, n, len(b))
		}
		if _, n := varint(b[:len(b)-1]); n != 0 {
			t.Fatalf("%d: short read accepted", v)
		}
	}
}

// After the server's first Initial the client carries the server's
// connection ID under the keys of its own first one: same connection. A
// new connection from the same address and port has keys of its own.
func TestNewConnection(t *testing.T) {
	hello := clientHello("first.example", 1500, 0)
	serverID := []byte{0xaa, 0xbb, 0xcc, 0xdd}
	p1, _ := SealInitial(nil, Version1, rfcDCID, nil, 0, AppendCrypto(nil, 0, hello[:1000]))
	p2, _ := sealInitial(nil, Version1, rfcDCID, serverID, nil, 1, AppendCrypto(nil, 1000, hello[1000:]), MinInitialSize)
	var a Assembler
	if a.NewConnection(p1) {
		t.Fatal("NewConnection before any packet")
	}
	a.Feed(p1)
	if a.NewConnection(p1) || a.NewConnection(p2) {
		t.Fatal("a packet of the same connection taken for a new one")
	}
	if st, name := a.Feed(p2); st != l7.NameFound || string(name) != "first.example" {
		t.Fatalf("continuation under the server's connection ID: %d %q", st, name)
	}
	other, _ := ClientInitial(Version1, []byte{7, 7, 7, 7, 7, 7, 7, 7}, clientHello("second.example", 0, 0))
	if !a.NewConnection(other[0]) {
		t.Fatal("a new connection's Initial not told apart")
	}
	if v2, _ := ClientInitial(Version2, rfcDCID, clientHello("v2.example", 0, 0)); !a.NewConnection(v2[0]) {
		t.Fatal("the same connection ID in another version is another connection")
	}
	a.Reset()
	if st, name := a.Feed(other[0]); st != l7.NameFound || string(name) != "second.example" {
		t.Fatalf("after Reset: %d %q", st, name)
	}
}

// A client Initial in a datagram below 1200 bytes is discarded by servers
// (RFC 9000 section 14.1), so it must not decide the name either: a client
// could otherwise show the firewall one hello and the server another.
func TestSmallDatagramIgnored(t *testing.T) {
	small, err := sealInitial(nil, Version1, rfcDCID, rfcDCID, nil, 0, AppendCrypto(nil, 0, clientHello("decoy.example", 0, 0)), 0)
	if err != nil || len(small) >= MinInitialSize {
		t.Fatalf("%d bytes, %v", len(small), err)
	}
	var a Assembler
	if st, _ := a.Feed(small); st != l7.NameUnknown || HasInitial(small) {
		t.Fatalf("small datagram: state %d, HasInitial %v", st, HasInitial(small))
	}
	if _, err := ServerName(small); err != ErrNotInitial {
		t.Fatalf("ServerName: %v", err)
	}
	// Nor does it start a new connection.
	var b Assembler
	b.Feed(readHex(t, "rfc9001-client-initial.hex"))
	if b.NewConnection(small) {
		t.Fatal("a small datagram taken for a new connection")
	}
	// Padded to the minimum, the same hello counts.
	padded := append(small, make([]byte, MinInitialSize-len(small))...)
	if st, name := a.Feed(padded); st != l7.NameFound || string(name) != "decoy.example" {
		t.Fatalf("padded datagram: %d %q", st, name)
	}
}
