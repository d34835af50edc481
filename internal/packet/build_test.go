package packet

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/checksum"
)

// checkWire verifies lengths and checksums of a built packet by hand.
func checkWire(t *testing.T, b []byte) {
	t.Helper()
	var p Packet
	if err := NewDecoder().Decode(b, &p); err != nil {
		t.Fatalf("decode built packet: %v", err)
	}
	if p.Length != len(b) {
		t.Fatalf("IP length %d, packet is %d bytes", p.Length, len(b))
	}
	if p.Family == IPv4 && checksum.Internet(0, b[:p.HeaderLen]) != 0 {
		t.Errorf("bad IPv4 header checksum")
	}
	l4 := b[p.HeaderLen:]
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMPv6:
		if checksum.Internet(checksum.Pseudo(p.Src, p.Dst, p.Proto, len(l4)), l4) != 0 {
			t.Errorf("bad %d checksum", p.Proto)
		}
	case ProtoICMP:
		if checksum.Internet(0, l4) != 0 {
			t.Errorf("bad ICMP checksum")
		}
	case ProtoSCTP:
		c := append([]byte(nil), l4...)
		want := binary.LittleEndian.Uint32(c[8:12])
		c[8], c[9], c[10], c[11] = 0, 0, 0, 0
		if got := crc32.Checksum(c, crc32.MakeTable(crc32.Castagnoli)); got != want {
			t.Errorf("SCTP CRC32c %08x, want %08x", want, got)
		}
	}
	if p.Proto == ProtoUDP && int(binary.BigEndian.Uint16(l4[4:6])) != len(l4) {
		t.Errorf("UDP length %d, datagram is %d bytes", binary.BigEndian.Uint16(l4[4:6]), len(l4))
	}
}

func TestBuild(t *testing.T) {
	mapped := netip.AddrFrom16(v4a.As16())
	tests := []struct {
		name  string
		spec  Spec
		check func(t *testing.T, p *Packet)
	}{
		{"tcp4", Spec{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPSyn | TCPAck, Seq: 5, Ack: 6, Payload: []byte("abc"), TTL: 9},
			func(t *testing.T, p *Packet) {
				if p.TCPFlags != TCPSyn|TCPAck || p.TCPSeq != 5 || p.TCPAck != 6 || p.TTL != 9 || string(p.Payload) != "abc" {
					t.Errorf("got %+v", p)
				}
			}},
		{"tcp6 default ttl", Spec{Src: v6a, Dst: v6b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2},
			func(t *testing.T, p *Packet) {
				if p.TTL != 64 || p.Family != IPv6 {
					t.Errorf("got %+v", p)
				}
			}},
		{"udp4 odd payload", Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, SrcPort: 53, DstPort: 9, Payload: []byte("odd")}, nil},
		{"udp6", Spec{Src: v6a, Dst: v6b, Proto: ProtoUDP, SrcPort: 53, DstPort: 9, Payload: make([]byte, 1000)}, nil},
		{"sctp6", Spec{Src: v6a, Dst: v6b, Proto: ProtoSCTP, SrcPort: 7, DstPort: 8, Payload: []byte{1, 2, 3, 4}}, nil},
		{"icmp echo", Spec{Src: v4a, Dst: v4b, Proto: ProtoICMP, ICMPType: 8, ICMPID: 3, ICMPSeq: 4, Payload: []byte("ping")},
			func(t *testing.T, p *Packet) {
				if p.ICMPType != 8 || p.ICMPID != 3 || p.ICMPSeq != 4 || string(p.Payload) != "ping" {
					t.Errorf("got %+v", p)
				}
			}},
		{"icmpv6 echo", Spec{Src: v6a, Dst: v6b, Proto: ProtoICMPv6, ICMPType: 128, ICMPID: 3, ICMPSeq: 4},
			func(t *testing.T, p *Packet) {
				if p.ICMPType != 128 || p.ICMPID != 3 || p.ICMPSeq != 4 {
					t.Errorf("got %+v", p)
				}
			}},
		{"mapped ipv4 builds ipv4", Spec{Src: mapped, Dst: v4b, Proto: ProtoUDP},
			func(t *testing.T, p *Packet) {
				if p.Family != IPv4 || p.Src != v4a {
					t.Errorf("got %+v", p)
				}
			}},
		{"other protocol carries payload", Spec{Src: v4a, Dst: v4b, Proto: ProtoGRE, Payload: []byte{0, 0, 8, 0}},
			func(t *testing.T, p *Packet) {
				if p.Proto != ProtoGRE || p.HasL4 || len(p.Payload) != 4 {
					t.Errorf("got %+v", p)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBuild(t, tt.spec)
			checkWire(t, b)
			var p Packet
			if err := NewDecoder().Decode(b, &p); err != nil {
				t.Fatal(err)
			}
			if p.Src != tt.spec.Src.Unmap() || p.Dst != tt.spec.Dst || p.Proto != tt.spec.Proto {
				t.Errorf("addresses/proto: got %+v", p)
			}
			if tt.check != nil {
				tt.check(t, &p)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	for _, s := range []Spec{
		{Dst: v4b, Proto: ProtoUDP},
		{Src: v4a, Dst: v6b, Proto: ProtoUDP},
		{Src: v6a, Dst: v6b, Proto: ProtoICMP},
		{Src: v4a, Dst: v4b, Proto: ProtoICMPv6},
		{Src: v4a, Dst: v4b, Proto: ProtoUDP, Payload: make([]byte, 65535-28+1)},
	} {
		if b, err := Build(s); err == nil {
			t.Errorf("Build(%v->%v proto %d, %d bytes payload) = %d bytes, want error", s.Src, s.Dst, s.Proto, len(s.Payload), len(b))
		}
	}
	if _, err := Build(Spec{Src: v4a, Dst: v4b, Proto: ProtoUDP, Payload: make([]byte, 65535-28)}); err != nil {
		t.Errorf("largest IPv4 datagram: %v", err)
	}
	if _, err := BuildICMPError(3, 1, nil, v4a, v6b); err == nil {
		t.Error("BuildICMPError with mixed families succeeded")
	}
}

func TestBuildICMPError(t *testing.T) {
	big4 := mustBuild(t, Spec{Src: v4b, Dst: v4a, Proto: ProtoTCP, SrcPort: 443, DstPort: 40000, Payload: make([]byte, 1400)})
	big6 := mustBuild(t, Spec{Src: v6b, Dst: v6a, Proto: ProtoUDP, SrcPort: 53, DstPort: 4000, Payload: make([]byte, 1400)})
	tests := []struct {
		name      string
		typ, code uint8
		quoted    []byte
		src, dst  netip.Addr
		wantLen   int
		wantSeq   uint16
		wantInner Quoted
	}{
		{"ipv4 frag needed, cut to 576", 3, 4, big4, v4a, v4b, 576, 576,
			Quoted{Valid: true, Src: v4b, Dst: v4a, Proto: ProtoTCP, SrcPort: 443, DstPort: 40000}},
		{"ipv4 port unreachable, short quote kept", 3, 3, big4[:28], v4a, v4b, 56, 0,
			Quoted{Valid: true, Src: v4b, Dst: v4a, Proto: ProtoTCP, SrcPort: 443, DstPort: 40000}},
		{"ipv6 packet too big, cut to 1280", 2, 0, big6, v6a, v6b, 1280, 1280,
			Quoted{Valid: true, Src: v6b, Dst: v6a, Proto: ProtoUDP, SrcPort: 53, DstPort: 4000}},
		{"ipv6 time exceeded", 3, 0, big6[:48], v6a, v6b, 96, 0,
			Quoted{Valid: true, Src: v6b, Dst: v6a, Proto: ProtoUDP, SrcPort: 53, DstPort: 4000}},
		{"garbage quote", 11, 0, []byte{1, 2, 3}, v4a, v4b, 31, 0, Quoted{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := BuildICMPError(tt.typ, tt.code, tt.quoted, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			checkWire(t, b)
			if len(b) != tt.wantLen {
				t.Errorf("length %d, want %d", len(b), tt.wantLen)
			}
			var p Packet
			if err := NewDecoder().Decode(b, &p); err != nil {
				t.Fatal(err)
			}
			if p.ICMPType != tt.typ || p.ICMPCode != tt.code || binary.BigEndian.Uint16(b[p.HeaderLen+6:]) != tt.wantSeq {
				t.Errorf("got %+v", p)
			}
			if p.Inner != tt.wantInner {
				t.Errorf("Inner = %+v, want %+v", p.Inner, tt.wantInner)
			}
		})
	}
}

func TestFragment4(t *testing.T) {
	pkt, err := Build(Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Payload: make([]byte, 100)})
	if err != nil {
		t.Fatal(err)
	}
	fs := Fragment4(pkt, 7, 48) // 108 bytes of UDP: 48, 48, 12
	if len(fs) != 3 {
		t.Fatalf("%d fragments, want 3", len(fs))
	}
	var joined []byte
	for i, f := range fs {
		h := binary.BigEndian
		wantFO := uint16(i * 48 / 8)
		if i < 2 {
			wantFO |= 0x2000
		}
		if int(h.Uint16(f[2:4])) != len(f) || h.Uint16(f[4:6]) != 7 || h.Uint16(f[6:8]) != wantFO {
			t.Errorf("fragment %d: length %d/%d, id %d, offset word %#x, want %#x", i, h.Uint16(f[2:4]), len(f), h.Uint16(f[4:6]), h.Uint16(f[6:8]), wantFO)
		}
		if s := checksum.Internet(0, f[:20]); s != 0 {
			t.Errorf("fragment %d: header checksum does not verify (%#x)", i, s)
		}
		joined = append(joined, f[20:]...)
	}
	if string(joined) != string(pkt[20:]) {
		t.Error("the fragments' payloads do not join to the packet's")
	}
}
