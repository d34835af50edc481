package quic

import "testing"

// BenchmarkFirstFlight is a new connection's whole first flight, hello in
// two Initial packets: key derivation, two decryptions, reassembly, parse.
func BenchmarkFirstFlight(b *testing.B) {
	pkts, err := ClientInitial(Version1, rfcDCID, clientHello("bench.example", 1500, 0))
	if err != nil || len(pkts) != 2 {
		b.Fatal(len(pkts), err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkts[0]) + len(pkts[1])))
	for b.Loop() {
		var a Assembler
		a.Feed(pkts[0])
		a.Feed(pkts[1])
	}
}

// BenchmarkFeedKnownKeys is one more Initial of a connection whose keys and
// buffers exist: what each packet after the first costs.
func BenchmarkFeedKnownKeys(b *testing.B) {
	hello := clientHello("bench.example", 1500, 0)
	p, err := SealInitial(nil, Version1, rfcDCID, nil, 1, AppendCrypto(nil, 1000, hello[1000:]))
	if err != nil {
		b.Fatal(err)
	}
	var a Assembler
	a.Feed(p)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		a.packets = 1 // stay below MaxPackets
		a.Feed(p)
	}
}

// BenchmarkHasInitial is the test a UDP datagram of a flow not followed yet
// meets first: a short header, and an Initial.
func BenchmarkHasInitial(b *testing.B) {
	short := append([]byte{0x40}, make([]byte, 1200)...)
	initial := readHex(b, "rfc9001-client-initial.hex")
	b.Run("short", func(b *testing.B) {
		for b.Loop() {
			HasInitial(short)
		}
	})
	b.Run("initial", func(b *testing.B) {
		for b.Loop() {
			HasInitial(initial)
		}
	})
}
