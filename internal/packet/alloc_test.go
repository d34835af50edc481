package packet

import (
	"reflect"
	"slices"
	"testing"
)

// mix is a spread of what a queue sees: both families, every decoded
// protocol, options, extension headers, fragments, ICMP errors and packets
// that fail to decode.
func mix(tb testing.TB) [][]byte {
	quoted := ipv4Raw(nil, ProtoTCP, 0, tcpRaw(40000, 443, TCPSyn, nil, nil))[:28]
	quoted6 := ipv6Raw(ProtoUDP, nil, udpRaw(5353, 53, nil))
	return [][]byte{
		mustBuild(tb, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: TCPAck, Payload: make([]byte, 64)}),
		mustBuild(tb, Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: TCPSyn}),
		ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPSyn, tcpOpts, nil)),
		ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPSyn, []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, nil)),
		mustBuild(tb, Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 53, DstPort: 5353, Payload: make([]byte, 33)}),
		mustBuild(tb, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 53, DstPort: 5353}),
		mustBuild(tb, Spec{Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPType: 8, ICMPID: 1, ICMPSeq: 2}),
		mustBuild(tb, Spec{Src: v6a, Dst: v6b, Proto: ProtoICMPv6, ICMPType: 128, ICMPID: 1, ICMPSeq: 2}),
		mustBuild(tb, Spec{Src: v4a, Dst: v4b, Proto: ProtoSCTP, SrcPort: 1, DstPort: 2}),
		ipv4Raw([]byte{1, 1, 0x94, 4}, ProtoUDP, 0, udpRaw(1, 2, nil)),
		ipv4Raw(nil, ProtoUDP, 185, []byte{1, 2, 3}),
		ipv6Raw(extHopByHop, slices.Concat(extHdr(extDestOptions, 0), extHdr(extFragment, 0), fragHdr(ProtoTCP, 0, true)), tcpRaw(1, 2, TCPAck, nil, nil)),
		ipv6Raw(extHopByHop, extHdr(ProtoICMPv6, 0), icmpRaw(143, 0, 0, 1, make([]byte, 20))), // MLDv2 report
		ipv4Raw(nil, ProtoICMP, 0, icmpRaw(3, 3, 0, 0, quoted)),
		ipv6Raw(ProtoICMPv6, nil, icmpRaw(1, 4, 0, 0, quoted6)),
		ipv4Raw(nil, ProtoGRE, 0, []byte{0, 0, 8, 0}),
		// Failures: every sentinel.
		nil,
		{0x50},
		ipv4Raw(nil, ProtoUDP, 0, nil)[:19],
		ipv4Raw([]byte{0x94, 1, 0, 0}, ProtoUDP, 0, udpRaw(1, 2, nil)),
		ipv4Raw(nil, ProtoTCP, 0, with(tcpRaw(1, 2, TCPSyn, nil, nil), func(b []byte) { b[12] = 0x40 })),
		ipv6Raw(extRouting, slices.Concat(extHdr(extRouting, 0), extHdr(ProtoUDP, 0)), udpRaw(1, 2, nil)),
	}
}

func TestDecodeZeroAllocs(t *testing.T) {
	packets := mix(t)
	d := NewDecoder()
	var p Packet
	var failed int
	for _, b := range packets { // every packet is exercised, failures included
		if d.Decode(b, &p) != nil {
			failed++
		}
	}
	if failed == 0 || failed == len(packets) {
		t.Fatalf("%d of %d packets failed: the mix must hold both kinds", failed, len(packets))
	}
	allocs := testing.AllocsPerRun(100, func() {
		// A Packet on the caller's stack must stay there: Decode keeps no
		// pointer to it.
		var p Packet
		for _, b := range packets {
			_ = d.Decode(b, &p)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %.1f times per %d packets, want 0", allocs, len(packets))
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"ipv4-tcp", mustBuild(b, Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: TCPAck, Payload: make([]byte, 64)})},
		{"ipv4-tcp-syn-options", ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPSyn, tcpOpts, nil))},
		{"ipv4-udp", mustBuild(b, Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 53, DstPort: 5353, Payload: make([]byte, 64)})},
		{"ipv6-udp", mustBuild(b, Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 53, DstPort: 5353, Payload: make([]byte, 64)})},
		{"ipv6-ext-tcp", ipv6Raw(extHopByHop, slices.Concat(extHdr(extDestOptions, 0), extHdr(ProtoTCP, 0)), tcpRaw(1, 2, TCPAck, nil, nil))},
		{"ipv4-icmp-error", ipv4Raw(nil, ProtoICMP, 0, icmpRaw(3, 3, 0, 0, ipv4Raw(nil, ProtoTCP, 0, tcpRaw(40000, 443, TCPSyn, nil, nil))[:28]))},
		{"ipv4-truncated", ipv4Raw(nil, ProtoTCP, 0, make([]byte, 10))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := NewDecoder()
			var p Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.data)))
			for b.Loop() {
				_ = d.Decode(bc.data, &p)
			}
		})
	}
}

// BenchmarkDecodeMix decodes the whole mix per iteration.
func BenchmarkDecodeMix(b *testing.B) {
	packets := mix(b)
	d := NewDecoder()
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		for _, pkt := range packets {
			_ = d.Decode(pkt, &p)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(packets)), "ns/packet")
}

var sentinels = []error{ErrTruncated, ErrVersion, ErrHeader, ErrOptions, ErrExtHeaders}

// fuzzDecode seeds f with the mix and fuzzes check with one Decoder, reused
// from input to input as the agent's workers reuse theirs.
func fuzzDecode(f *testing.F, check func(t *testing.T, d *Decoder, data []byte)) {
	for _, b := range mix(f) {
		f.Add(b)
	}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, data []byte) { check(t, d, data) })
}

// FuzzDecode checks that no input panics the decoder, that every error is a
// sentinel, and that a decoded packet is self-consistent and its slices stay
// within the input.
func FuzzDecode(f *testing.F) {
	fuzzDecode(f, func(t *testing.T, d *Decoder, data []byte) {
		// DecodeHeaders accepts a superset of what Decode accepts, and
		// agrees with it there.
		var cut Packet
		cutErr := d.DecodeHeaders(data, &cut)
		if !aliases(cut.Payload, data) {
			t.Fatalf("DecodeHeaders: Payload %p (len %d) outside data", cut.Payload, len(cut.Payload))
		}
		if cutErr == nil && cut.HeaderLen+len(cut.Payload) > len(data) {
			t.Fatalf("DecodeHeaders: HeaderLen %d + payload %d beyond buffer %d", cut.HeaderLen, len(cut.Payload), len(data))
		}
		var p Packet
		err := d.Decode(data, &p)
		if err == nil && (cutErr != nil || !reflect.DeepEqual(p, cut)) {
			t.Fatalf("Decode = %+v, but DecodeHeaders = %+v, %v", p, cut, cutErr)
		}
		if !aliases(p.Payload, data) {
			t.Fatalf("Payload %p (len %d) outside data", p.Payload, len(p.Payload))
		}
		if err != nil {
			for _, s := range sentinels {
				if err == s {
					return
				}
			}
			t.Fatalf("error %v is not a sentinel", err)
		}
		if want := Family(data[0] >> 4); p.Family != want {
			t.Fatalf("Family %v from a version-%d packet", p.Family, want)
		}
		if p.Src.Is4() != (p.Family == IPv4) || p.Dst.Is4() != (p.Family == IPv4) {
			t.Fatalf("addresses %v %v in a %v packet", p.Src, p.Dst, p.Family)
		}
		if p.HeaderLen > p.Length || p.Length > len(data) || p.HeaderLen+len(p.Payload) > p.Length {
			t.Fatalf("HeaderLen %d, payload %d, Length %d, buffer %d", p.HeaderLen, len(p.Payload), p.Length, len(data))
		}
		if p.HasL4 && p.NonFirstFragment {
			t.Fatal("transport header decoded from a non-first fragment")
		}
		if p.NonFirstFragment && !p.Fragment {
			t.Fatal("NonFirstFragment without Fragment")
		}
		if p.Inner.Valid && (p.Inner.Src.Is4() != (p.Family == IPv4)) {
			t.Fatalf("inner %v quoted by a %v packet", p.Inner.Src, p.Family)
		}
	})
}
