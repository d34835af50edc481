package replay

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/packet"
)

// FuzzReassembler: any sequence of packets (each prefixed by a two-byte
// length) never panics the reassembler, what it assembles decodes or is
// refused by the decoder without panic, and it holds no more than its
// bounds allow.
func FuzzReassembler(f *testing.F) {
	seed := func(frags [][]byte) []byte {
		var b []byte
		for _, fr := range frags {
			b = binary.BigEndian.AppendUint16(b, uint16(len(fr)))
			b = append(b, fr...)
		}
		return b
	}
	p4, _ := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 53, Payload: bytes.Repeat([]byte{1}, 100)})
	p6, _ := packet.Build(packet.Spec{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 53, Payload: bytes.Repeat([]byte{1}, 100)})
	f.Add(seed(packet.Fragment4(p4, 1, 48)))
	f.Add(seed(frag6(p6, 1, 48)))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReassembler()
		dec := packet.NewDecoder()
		var p packet.Packet
		now := int64(0)
		for len(in) >= 2 {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			if n > len(in) {
				n = len(in)
			}
			whole, _, _ := r.Add(in[:n], 1, now)
			in = in[n:]
			now += 1e9
			if whole != nil {
				if len(whole) > 40+8+maxDatagram+60 {
					t.Fatalf("assembled %d bytes", len(whole))
				}
				_ = dec.Decode(whole, &p)
			}
			r.Expired()
			if len(r.pending) > maxPending {
				t.Fatalf("%d pending", len(r.pending))
			}
		}
		r.Flush()
	})
}
