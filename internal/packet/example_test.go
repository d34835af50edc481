package packet_test

import (
	"fmt"
	"net/netip"

	"github.com/fwagent/fwagent/internal/packet"
)

func ExampleDecoder_Decode() {
	data, err := packet.Build(packet.Spec{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"),
		Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: packet.TCPSyn,
	})
	if err != nil {
		panic(err)
	}
	d := packet.NewDecoder() // one per worker
	var p packet.Packet      // reused for every packet
	if err := d.Decode(data, &p); err != nil {
		panic(err)
	}
	fmt.Println(p.Family, p.Src, p.SrcPort, "->", p.Dst, p.DstPort, "syn:", p.TCPFlags&packet.TCPSyn != 0)
	// Output: ipv4 192.0.2.1 40000 -> 198.51.100.7 443 syn: true
}

func ExampleBuildICMPError() {
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	orig, _ := packet.Build(packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53})
	// The router at 2001:db8::ff tells the sender the destination is unreachable.
	icmp, _ := packet.BuildICMPError(1, 4, orig, netip.MustParseAddr("2001:db8::ff"), src)
	var p packet.Packet
	if err := packet.NewDecoder().Decode(icmp, &p); err != nil {
		panic(err)
	}
	fmt.Println(p.ICMPType, p.ICMPCode, p.Inner.Valid, p.Inner.Src, p.Inner.SrcPort, "->", p.Inner.Dst, p.Inner.DstPort)
	// Output: 1 4 true 2001:db8::1 5000 -> 2001:db8::2 53
}
