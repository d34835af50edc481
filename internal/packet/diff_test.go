package packet

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FuzzDecodeMatchesGopacket compares Decode with gopacket's own, allocating
// packet decoder: where both decode a transport header, they must agree on
// addresses, protocol and ports.
func FuzzDecodeMatchesGopacket(f *testing.F) {
	fuzzDecode(f, func(t *testing.T, d *Decoder, data []byte) {
		var p Packet
		if d.Decode(data, &p) != nil || !p.HasL4 || p.Fragment { // gopacket stops at any fragment header
			return
		}
		first := layers.LayerTypeIPv4
		if p.Family == IPv6 {
			first = layers.LayerTypeIPv6
		}
		gp := gopacket.NewPacket(data, first, gopacket.DecodeOptions{Lazy: false, NoCopy: true})
		if gp.ErrorLayer() != nil || gp.Layer(gopacket.LayerTypeFragment) != nil {
			// gopacket is stricter in places (IPv4 option length 2, ...),
			// and stops at an atomic fragment, which RFC 6946 says to
			// process as a whole packet.
			return
		}
		nl, tl := gp.NetworkLayer(), gp.TransportLayer()
		if nl == nil {
			t.Fatalf("gopacket found no network layer; we found %+v", p)
		}
		src, _ := netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
		dst, _ := netip.AddrFromSlice(nl.NetworkFlow().Dst().Raw())
		if src != p.Src || dst != p.Dst {
			t.Fatalf("addresses %v %v, gopacket %v %v", p.Src, p.Dst, src, dst)
		}
		switch p.Proto {
		case ProtoTCP, ProtoUDP, ProtoSCTP:
			if tl == nil {
				t.Fatalf("gopacket found no transport layer in %v; we found ports %d %d", gp, p.SrcPort, p.DstPort)
			}
			f := tl.TransportFlow()
			if sp, dp := f.Src().Raw(), f.Dst().Raw(); len(sp) != 2 || uint16(sp[0])<<8|uint16(sp[1]) != p.SrcPort || uint16(dp[0])<<8|uint16(dp[1]) != p.DstPort {
				t.Fatalf("ports %d %d, gopacket %v", p.SrcPort, p.DstPort, f)
			}
		}
	})
}
