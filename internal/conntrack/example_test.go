package conntrack_test

import (
	"fmt"
	"net/netip"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// A worker tracks each packet, reuses the flow's cached decision when it is
// from the current policy generation, and otherwise decides and caches.
func Example() {
	var now int64
	tb := conntrack.New(conntrack.Config{MaxFlows: 1000, Now: func() int64 { return now }})
	const gen = 1
	decide := func(p *packet.Packet, st nf.State) uint64 { return 42 } // the policy, elsewhere

	client, server := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.1")
	pkts := []*packet.Packet{
		{Family: packet.IPv4, Src: client, Dst: server, Proto: packet.ProtoUDP, HasL4: true, SrcPort: 5000, DstPort: 53, Length: 60},
		{Family: packet.IPv4, Src: server, Dst: client, Proto: packet.ProtoUDP, HasL4: true, SrcPort: 53, DstPort: 5000, Length: 120},
	}
	for _, p := range pkts {
		r := tb.Track(p, p.Length, false)
		v, ok := r.Cached(gen)
		if !ok {
			v = decide(p, r.State)
			tb.SetCache(r.Flow, conntrack.Cache{Gen: gen, Value: v})
		}
		fmt.Println(r.State, r.Reply, ok, v)
	}
	// Output:
	// new false false 42
	// established true true 42
}
