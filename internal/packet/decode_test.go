package packet

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"unsafe"
)

var (
	tcpOpts = []byte{ // a Linux SYN: MSS, SACK permitted, timestamps, NOP, window scale
		2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
	}
	hello = []byte("hello")
)

func TestDecodeValid(t *testing.T) {
	quotedTCP := ipv4Raw(nil, ProtoTCP, 0, tcpRaw(40000, 443, TCPSyn, nil, nil))[:28] // header + 8 bytes, as routers quote
	quotedUDP6 := ipv6Raw(ProtoUDP, nil, udpRaw(5353, 53, make([]byte, 100)))
	quotedEcho := ipv4Raw(nil, ProtoICMP, 0, icmpRaw(8, 0, 77, 1, hello))
	quotedFrag6 := ipv6Raw(extFragment, fragHdr(ProtoTCP, 0, true), tcpRaw(1, 2, TCPAck, nil, nil))

	tests := []struct {
		name        string
		data        []byte
		want        Packet // Payload compared by content, and checked to alias data
		wantPayload []byte
	}{
		{
			name: "ipv4 tcp syn with options and payload",
			data: ipv4Raw(nil, ProtoTCP, 0x4000, tcpRaw(40000, 443, TCPSyn|TCPEce|TCPCwr, tcpOpts, hello)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoTCP, Length: 65, TTL: 64, HeaderLen: 20, HasL4: true,
				SrcPort: 40000, DstPort: 443, TCPFlags: TCPSyn | TCPEce | TCPCwr, TCPSeq: 1000, TCPAck: 2000, TCPWindow: 512},
			wantPayload: hello,
		},
		{
			name: "ipv6 tcp",
			data: ipv6Raw(ProtoTCP, nil, tcpRaw(1234, 80, TCPAck|TCPPsh, nil, hello)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoTCP, Length: 65, TTL: 64, HeaderLen: 40, HasL4: true,
				SrcPort: 1234, DstPort: 80, TCPFlags: TCPAck | TCPPsh, TCPSeq: 1000, TCPAck: 2000, TCPWindow: 512},
			wantPayload: hello,
		},
		{
			name: "ipv4 udp, odd length",
			data: ipv4Raw(nil, ProtoUDP, 0, udpRaw(53, 33000, []byte("abc"))),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoUDP, Length: 31, TTL: 64, HeaderLen: 20, HasL4: true,
				SrcPort: 53, DstPort: 33000},
			wantPayload: []byte("abc"),
		},
		{
			name: "ipv6 udp empty payload",
			data: ipv6Raw(ProtoUDP, nil, udpRaw(500, 4500, nil)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoUDP, Length: 48, TTL: 64, HeaderLen: 40, HasL4: true,
				SrcPort: 500, DstPort: 4500},
		},
		{
			name: "udp length shorter than ip payload trims payload",
			data: ipv4Raw(nil, ProtoUDP, 0, with(udpRaw(1, 2, []byte("abcdef")), func(b []byte) { b[5] = 10 })),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoUDP, Length: 34, TTL: 64, HeaderLen: 20, HasL4: true,
				SrcPort: 1, DstPort: 2},
			wantPayload: []byte("ab"),
		},
		{
			name: "ipv4 sctp",
			data: ipv4Raw(nil, ProtoSCTP, 0, slices.Concat([]byte{0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 1, 0, 0, 0, 0}, hello)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoSCTP, Length: 37, TTL: 64, HeaderLen: 20, HasL4: true,
				SrcPort: 3000, DstPort: 3001},
			wantPayload: hello,
		},
		{
			name: "ipv4 icmp echo request",
			data: ipv4Raw(nil, ProtoICMP, 0, icmpRaw(8, 0, 0x1234, 7, hello)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoICMP, Length: 33, TTL: 64, HeaderLen: 20, HasL4: true,
				ICMPType: 8, ICMPID: 0x1234, ICMPSeq: 7},
			wantPayload: hello,
		},
		{
			name: "ipv6 icmpv6 echo reply",
			data: ipv6Raw(ProtoICMPv6, nil, icmpRaw(129, 0, 42, 9, hello)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoICMPv6, Length: 53, TTL: 64, HeaderLen: 40, HasL4: true,
				ICMPType: 129, ICMPID: 42, ICMPSeq: 9},
			wantPayload: hello,
		},
		{
			name: "icmpv6 neighbour solicitation behind hop-by-hop",
			data: ipv6Raw(extHopByHop, extHdr(ProtoICMPv6, 0), icmpRaw(135, 0, 0, 0, make([]byte, 16))),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoICMPv6, Length: 72, TTL: 64, HeaderLen: 48, HasL4: true,
				ICMPType: 135},
			wantPayload: make([]byte, 16),
		},
		{
			name: "icmp non-echo leaves id and seq zero",
			data: ipv4Raw(nil, ProtoICMP, 0, icmpRaw(13, 0, 5, 6, nil)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoICMP, Length: 28, TTL: 64, HeaderLen: 20, HasL4: true,
				ICMPType: 13},
		},
		{
			name:        "gre is opaque",
			data:        ipv4Raw(nil, ProtoGRE, 0, []byte{0, 0, 0x08, 0}),
			want:        Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoGRE, Length: 24, TTL: 64, HeaderLen: 20},
			wantPayload: []byte{0, 0, 0x08, 0},
		},
		{
			name:        "esp in ipv6 is opaque",
			data:        ipv6Raw(ProtoESP, nil, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}),
			want:        Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoESP, Length: 49, TTL: 64, HeaderLen: 40},
			wantPayload: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9},
		},
		{
			name:        "icmpv4 inside ipv6 is opaque",
			data:        ipv6Raw(ProtoICMP, nil, []byte{8, 0}),
			want:        Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoICMP, Length: 42, TTL: 64, HeaderLen: 40},
			wantPayload: []byte{8, 0},
		},
		{
			name: "ipv4 options (IHL 7)",
			data: ipv4Raw([]byte{1, 1, 0x94, 4, 0, 0, 0x07, 3, 4, 0, 0, 0}, ProtoUDP, 0, udpRaw(1, 2, hello)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoUDP, Length: 45, TTL: 64, HeaderLen: 32, HasL4: true,
				SrcPort: 1, DstPort: 2},
			wantPayload: hello,
		},
		{
			name: "ipv4 first fragment decodes transport",
			data: ipv4Raw(nil, ProtoUDP, 0x2000, udpRaw(7, 8, hello)[:12]),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoUDP, Length: 32, TTL: 64, HeaderLen: 20, HasL4: true,
				Fragment: true, SrcPort: 7, DstPort: 8},
			wantPayload: []byte("hell"),
		},
		{
			name: "ipv4 non-first fragment",
			data: ipv4Raw(nil, ProtoTCP, 185, []byte{1, 2, 3}),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoTCP, Length: 23, TTL: 64, HeaderLen: 20,
				Fragment: true, NonFirstFragment: true},
			wantPayload: []byte{1, 2, 3},
		},
		{
			name: "ipv4 trailing link padding ignored",
			data: slices.Concat(ipv4Raw(nil, ProtoUDP, 0, udpRaw(1, 2, nil)), make([]byte, 18)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoUDP, Length: 28, TTL: 64, HeaderLen: 20, HasL4: true,
				SrcPort: 1, DstPort: 2},
		},
		{
			name: "ipv4 total length zero (GSO) takes the buffer",
			data: with(ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPAck, nil, hello)), func(b []byte) { b[2], b[3] = 0, 0 }),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoTCP, Length: 45, TTL: 64, HeaderLen: 20, HasL4: true,
				SrcPort: 1, DstPort: 2, TCPFlags: TCPAck, TCPSeq: 1000, TCPAck: 2000, TCPWindow: 512},
			wantPayload: hello,
		},
		{
			name: "ipv6 hop-by-hop, destination, routing, destination then tcp",
			data: ipv6Raw(extHopByHop, slices.Concat(extHdr(extDestOptions, 0), extHdr(extRouting, 1), extHdr(extDestOptions, 0), extHdr(ProtoTCP, 0)),
				tcpRaw(9, 10, TCPFin|TCPAck, nil, nil)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoTCP, Length: 100, TTL: 64, HeaderLen: 80, HasL4: true,
				SrcPort: 9, DstPort: 10, TCPFlags: TCPFin | TCPAck, TCPSeq: 1000, TCPAck: 2000, TCPWindow: 512},
		},
		{
			name: "ipv6 authentication header then udp",
			data: ipv6Raw(extAuth, []byte{ProtoUDP, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
				udpRaw(11, 12, nil)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoUDP, Length: 72, TTL: 64, HeaderLen: 64, HasL4: true,
				SrcPort: 11, DstPort: 12},
		},
		{
			name: "ipv6 first fragment decodes transport",
			data: ipv6Raw(extFragment, fragHdr(ProtoUDP, 0, true), udpRaw(13, 14, make([]byte, 64))[:16]),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoUDP, Length: 64, TTL: 64, HeaderLen: 48, HasL4: true,
				Fragment: true, SrcPort: 13, DstPort: 14},
			wantPayload: make([]byte, 8),
		},
		{
			name: "ipv6 non-first fragment",
			data: ipv6Raw(extHopByHop, slices.Concat(extHdr(extFragment, 0), fragHdr(ProtoTCP, 100, false)), []byte{1, 2, 3}),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoTCP, Length: 59, TTL: 64, HeaderLen: 56,
				Fragment: true, NonFirstFragment: true},
			wantPayload: []byte{1, 2, 3},
		},
		{
			name: "ipv6 atomic fragment is a whole packet",
			data: ipv6Raw(extFragment, fragHdr(ProtoUDP, 0, false), udpRaw(15, 16, nil)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoUDP, Length: 56, TTL: 64, HeaderLen: 48, HasL4: true,
				SrcPort: 15, DstPort: 16},
		},
		{
			name: "ipv6 no next header",
			data: ipv6Raw(extDestOptions, extHdr(59, 0), nil),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: 59, Length: 48, TTL: 64, HeaderLen: 48},
		},
		{
			name: "ipv6 payload length zero (jumbo/GSO) takes the buffer",
			data: with(ipv6Raw(ProtoUDP, nil, udpRaw(1, 2, hello)), func(b []byte) { b[4], b[5] = 0, 0 }),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoUDP, Length: 53, TTL: 64, HeaderLen: 40, HasL4: true,
				SrcPort: 1, DstPort: 2},
			wantPayload: hello,
		},
		{
			name: "icmp destination unreachable quotes tcp",
			data: ipv4Raw(nil, ProtoICMP, 0, icmpRaw(3, 3, 0, 0, quotedTCP)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoICMP, Length: 56, TTL: 64, HeaderLen: 20, HasL4: true,
				ICMPType: 3, ICMPCode: 3,
				Inner: Quoted{Valid: true, Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 443}},
			wantPayload: quotedTCP,
		},
		{
			name: "icmp time exceeded quotes echo",
			data: ipv4Raw(nil, ProtoICMP, 0, icmpRaw(11, 0, 0, 0, quotedEcho)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoICMP, Length: 20 + 8 + len(quotedEcho), TTL: 64, HeaderLen: 20, HasL4: true,
				ICMPType: 11,
				Inner:    Quoted{Valid: true, Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPID: 77}},
			wantPayload: quotedEcho,
		},
		{
			name: "icmpv6 packet too big quotes udp",
			data: ipv6Raw(ProtoICMPv6, nil, icmpRaw(2, 0, 0, 1280, quotedUDP6)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoICMPv6, Length: 40 + 8 + len(quotedUDP6), TTL: 64, HeaderLen: 40, HasL4: true,
				ICMPType: 2,
				Inner:    Quoted{Valid: true, Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53}},
			wantPayload: quotedUDP6,
		},
		{
			name: "icmpv6 time exceeded quotes a first fragment",
			data: ipv6Raw(ProtoICMPv6, nil, icmpRaw(3, 1, 0, 0, quotedFrag6)),
			want: Packet{Family: IPv6, Src: v6a, Dst: v6b, Proto: ProtoICMPv6, Length: 40 + 8 + len(quotedFrag6), TTL: 64, HeaderLen: 40, HasL4: true,
				ICMPType: 3, ICMPCode: 1,
				Inner: Quoted{Valid: true, Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2}},
			wantPayload: quotedFrag6,
		},
		{
			name: "icmp error with a short quote has no inner",
			data: ipv4Raw(nil, ProtoICMP, 0, icmpRaw(3, 1, 0, 0, quotedTCP[:19])),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoICMP, Length: 47, TTL: 64, HeaderLen: 20, HasL4: true,
				ICMPType: 3, ICMPCode: 1},
			wantPayload: quotedTCP[:19],
		},
		{
			name: "icmp error quoting tcp without ports has no inner",
			data: ipv4Raw(nil, ProtoICMP, 0, icmpRaw(3, 1, 0, 0, quotedTCP[:22])),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoICMP, Length: 50, TTL: 64, HeaderLen: 20, HasL4: true,
				ICMPType: 3, ICMPCode: 1},
			wantPayload: quotedTCP[:22],
		},
		{
			name: "icmp error quoting ipv6 has no inner",
			data: ipv4Raw(nil, ProtoICMP, 0, icmpRaw(3, 1, 0, 0, quotedUDP6)),
			want: Packet{Family: IPv4, Src: v4a, Dst: v4b, Proto: ProtoICMP, Length: 28 + len(quotedUDP6), TTL: 64, HeaderLen: 20, HasL4: true,
				ICMPType: 3, ICMPCode: 1},
			wantPayload: quotedUDP6,
		},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A dirty packet proves Decode resets every field.
			p := Packet{Fragment: true, SrcPort: 9, Inner: Quoted{Valid: true}, Payload: []byte{1}}
			if err := d.Decode(tt.data, &p); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(p.Payload, tt.wantPayload) {
				t.Errorf("Payload = %x, want %x", p.Payload, tt.wantPayload)
			}
			if !aliases(p.Payload, tt.data) {
				t.Errorf("Payload does not alias the decoded buffer")
			}
			got := p
			got.Payload = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// aliases reports whether sub lies within b (an empty sub trivially does).
func aliases(sub, b []byte) bool {
	if len(sub) == 0 {
		return true
	}
	s, e := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))+uintptr(len(b))
	ps := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return ps >= s && ps+uintptr(len(sub)) <= e
}

func TestDecodeMalformed(t *testing.T) {
	v4udp := ipv4Raw(nil, ProtoUDP, 0, udpRaw(1, 2, hello))
	v6udp := ipv6Raw(ProtoUDP, nil, udpRaw(1, 2, hello))
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version 5", with(v4udp, func(b []byte) { b[0] = 0x55 }), ErrVersion},
		{"version 0", make([]byte, 40), ErrVersion},
		{"ipv4 19 bytes", v4udp[:19], ErrTruncated},
		{"ipv4 IHL 4", with(v4udp, func(b []byte) { b[0] = 0x44 }), ErrHeader},
		{"ipv4 IHL 0", with(v4udp, func(b []byte) { b[0] = 0x40 }), ErrHeader},
		{"ipv4 IHL past the buffer", with(v4udp, func(b []byte) { b[0] = 0x4f }), ErrTruncated},
		{"ipv4 IHL past total length", with(ipv4Raw(nil, ProtoUDP, 0, make([]byte, 60)), func(b []byte) { b[0] = 0x4f; b[3] = 40 }), ErrHeader},
		{"ipv4 total length below header", with(v4udp, func(b []byte) { b[3] = 10 }), ErrHeader},
		{"ipv4 total length past the buffer", with(v4udp, func(b []byte) { b[3]++ }), ErrTruncated},
		{"ipv4 option length 1", ipv4Raw([]byte{0x94, 1, 0, 0}, ProtoUDP, 0, udpRaw(1, 2, nil)), ErrOptions},
		{"ipv4 option past header", ipv4Raw([]byte{1, 0x94, 8, 0}, ProtoUDP, 0, udpRaw(1, 2, nil)), ErrOptions},
		{"ipv4 option missing length", ipv4Raw([]byte{1, 1, 1, 0x94}, ProtoUDP, 0, udpRaw(1, 2, nil)), ErrOptions},
		{"ipv6 39 bytes", v6udp[:39], ErrTruncated},
		{"ipv6 payload length past the buffer", v6udp[:len(v6udp)-1], ErrTruncated},
		{"ipv6 hop-by-hop not first", ipv6Raw(extDestOptions, slices.Concat(extHdr(extHopByHop, 0), extHdr(ProtoUDP, 0)), udpRaw(1, 2, nil)), ErrExtHeaders},
		{"ipv6 hop-by-hop twice", ipv6Raw(extHopByHop, slices.Concat(extHdr(extHopByHop, 0), extHdr(ProtoUDP, 0)), udpRaw(1, 2, nil)), ErrExtHeaders},
		{"ipv6 destination options three times", ipv6Raw(extDestOptions, slices.Concat(extHdr(extDestOptions, 0), extHdr(extDestOptions, 0), extHdr(ProtoUDP, 0)), udpRaw(1, 2, nil)), ErrExtHeaders},
		{"ipv6 routing loop", ipv6Raw(extRouting, slices.Concat(extHdr(extRouting, 0), extHdr(ProtoUDP, 0)), udpRaw(1, 2, nil)), ErrExtHeaders},
		{"ipv6 fragment twice", ipv6Raw(extFragment, slices.Concat(fragHdr(extFragment, 0, true), fragHdr(ProtoUDP, 0, true)), udpRaw(1, 2, nil)), ErrExtHeaders},
		{"ipv6 extension header past the end", ipv6Raw(extRouting, extHdr(ProtoUDP, 3)[:16], nil), ErrTruncated},
		{"ipv6 extension header shorter than 8", ipv6Raw(extDestOptions, []byte{ProtoUDP, 0, 1, 2}, nil), ErrTruncated},
		{"ipv6 extension chain ends at the buffer end", ipv6Raw(extDestOptions, extHdr(extRouting, 0), nil), ErrTruncated},
		{"ipv6 authentication header past the end", ipv6Raw(extAuth, []byte{ProtoUDP, 9, 0, 0, 0, 0, 0, 0}, nil), ErrTruncated},
		{"tcp header 19 bytes", ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPSyn, nil, nil)[:19]), ErrTruncated},
		{"tcp data offset 4", ipv4Raw(nil, ProtoTCP, 0, with(tcpRaw(1, 2, TCPSyn, nil, nil), func(b []byte) { b[12] = 4 << 4 })), ErrHeader},
		{"tcp data offset beyond packet", ipv6Raw(ProtoTCP, nil, with(tcpRaw(1, 2, TCPSyn, nil, hello), func(b []byte) { b[12] = 15 << 4 })), ErrTruncated},
		{"tcp option length 0", ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPSyn, []byte{2, 0, 0, 0}, nil)), ErrOptions},
		{"tcp option past header", ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPSyn, []byte{1, 1, 8, 10}, nil)), ErrOptions},
		{"udp 7 bytes", ipv4Raw(nil, ProtoUDP, 0, udpRaw(1, 2, nil)[:7]), ErrTruncated},
		{"udp length 4", ipv4Raw(nil, ProtoUDP, 0, with(udpRaw(1, 2, hello), func(b []byte) { b[5] = 4 })), ErrHeader},
		{"udp length past packet", ipv6Raw(ProtoUDP, nil, with(udpRaw(1, 2, hello), func(b []byte) { b[5]++ })), ErrTruncated},
		{"sctp 11 bytes", ipv4Raw(nil, ProtoSCTP, 0, make([]byte, 11)), ErrTruncated},
		{"icmp 7 bytes", ipv4Raw(nil, ProtoICMP, 0, icmpRaw(8, 0, 1, 1, nil)[:7]), ErrTruncated},
		{"icmpv6 6 bytes", ipv6Raw(ProtoICMPv6, nil, icmpRaw(128, 0, 1, 1, nil)[:6]), ErrTruncated},
		{"ipv4 first fragment too short for tcp", ipv4Raw(nil, ProtoTCP, 0x2000, tcpRaw(1, 2, TCPSyn, nil, nil)[:10]), ErrTruncated},
		{"ipv6 first fragment too short for udp", ipv6Raw(extFragment, fragHdr(ProtoUDP, 0, true), []byte{0, 1, 0}), ErrTruncated},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := d.Decode(tt.data, &p)
			if err != tt.want { // sentinels are returned unwrapped
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("errors.Is(%v, %v) = false", err, tt.want)
			}
		})
	}
}

// TestDecodeBuilt checks the decoder against packets from Build, across
// families and protocols, including every TCP flag.
func TestDecodeBuilt(t *testing.T) {
	d := NewDecoder()
	for _, pair := range [][2]Spec{
		{{Src: v4a, Dst: v4b}, {Src: v6a, Dst: v6b}},
	} {
		for _, base := range pair {
			for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoSCTP} {
				for flag := 0; flag < 8; flag++ {
					s := base
					s.Proto, s.SrcPort, s.DstPort, s.TCPFlags = proto, 1000+uint16(flag), 80, 1<<flag
					s.Seq, s.Ack, s.Payload, s.TTL = 7, 9, []byte(fmt.Sprint(flag)), 33
					var p Packet
					if err := d.Decode(mustBuild(t, s), &p); err != nil {
						t.Fatalf("%+v: %v", s, err)
					}
					if p.Src != s.Src || p.Dst != s.Dst || p.Proto != proto || !p.HasL4 || p.SrcPort != s.SrcPort ||
						p.DstPort != 80 || p.TTL != 33 || string(p.Payload) != string(s.Payload) {
						t.Errorf("%+v decoded as %+v", s, p)
					}
					if proto == ProtoTCP && (p.TCPFlags != s.TCPFlags || p.TCPSeq != 7 || p.TCPAck != 9) {
						t.Errorf("tcp %+v decoded as %+v", s, p)
					}
				}
			}
		}
	}
}

func TestDecodeHeaders(t *testing.T) {
	tcp4 := ipv4Raw(nil, ProtoTCP, 0, tcpRaw(1, 2, TCPAck, tcpOpts, make([]byte, 100)))
	udp6 := ipv6Raw(extDestOptions, extHdr(ProtoUDP, 0), udpRaw(3, 4, make([]byte, 100)))
	tests := []struct {
		name        string
		data        []byte
		wantErr     error
		wantLength  int
		wantPayload int
		wantPorts   [2]uint16
	}{
		{"whole packet", tcp4, nil, len(tcp4), 100, [2]uint16{1, 2}},
		{"ipv4 tcp cut in payload", tcp4[:70], nil, len(tcp4), 10, [2]uint16{1, 2}},
		{"ipv4 tcp cut after header", tcp4[:60], nil, len(tcp4), 0, [2]uint16{1, 2}},
		{"ipv4 tcp cut in options", tcp4[:50], ErrTruncated, 0, 0, [2]uint16{}},
		{"ipv6 udp cut in payload", udp6[:60], nil, len(udp6), 4, [2]uint16{3, 4}},
		{"ipv6 udp cut in header", udp6[:52], ErrTruncated, 0, 0, [2]uint16{}},
		{"ipv6 cut in extension header", udp6[:44], ErrTruncated, 0, 0, [2]uint16{}},
		{"still rejects a bad header", with(tcp4, func(b []byte) { b[0] = 0x44 }), ErrHeader, 0, 0, [2]uint16{}},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := d.DecodeHeaders(tt.data, &p)
			if err != tt.wantErr {
				t.Fatalf("DecodeHeaders = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if p.Length != tt.wantLength || len(p.Payload) != tt.wantPayload || p.SrcPort != tt.wantPorts[0] || p.DstPort != tt.wantPorts[1] || !p.HasL4 {
				t.Errorf("got Length %d payload %d ports %d %d HasL4 %v; want %d %d %v", p.Length, len(p.Payload), p.SrcPort, p.DstPort, p.HasL4,
					tt.wantLength, tt.wantPayload, tt.wantPorts)
			}
			if len(tt.data) < tt.wantLength {
				if err := d.Decode(tt.data, &p); err != ErrTruncated {
					t.Errorf("Decode of a cut packet = %v, want ErrTruncated", err)
				}
			}
		})
	}
	allocs := testing.AllocsPerRun(100, func() {
		var p Packet
		_ = d.DecodeHeaders(tcp4[:70], &p)
		_ = d.DecodeHeaders(udp6[:44], &p)
	})
	if allocs != 0 {
		t.Errorf("DecodeHeaders allocates %.1f times, want 0", allocs)
	}
}
