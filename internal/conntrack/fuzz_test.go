package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// FuzzTrack drives a small table with arbitrary packet sequences, clock steps,
// expiry, cache writes and flushes, and checks after every step that the
// index agrees with the entries, the cap holds, and a cached decision is
// only ever returned to the flow it was stored for. A twin table gets the
// same steps, mostly through the lookahead path (Prefetch, PrefetchEntry,
// TrackAhead), and must answer every packet the same.
func FuzzTrack(f *testing.F) {
	// a handshake, data and close, then noise
	f.Add([]byte{
		0x00, fS, 0, 0, 0, 0,
		0x10, fS | fA, 0, 0, 0, 1,
		0x00, fA, 0, 0, 0x04, 1,
		0x00, fF | fA, 0, 0, 0, 1,
		0x10, fF | fA, 0, 0, 0, 2,
		0x00, fA, 0, 0, 0, 2,
	})
	f.Add([]byte{0x01, 0, 1, 0, 0, 0, 0x11, 0, 1, 3, 0, 0, 0x02, 0, 2, 0, 0, 0, 0x04, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Config{MaxFlows: 8, Shards: 2, ExpireBatch: 3, Seed: 1}
		tb, clk := newTestTable(t, cfg)
		cfg.Now = clk.Now // the twin shares the clock, and the seed
		twin := New(cfg)
		addrs := [4]netip.Addr{
			netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"),
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"),
		}
		stored := map[FlowID]Cache{}
		var gen uint32
		for len(data) >= 6 {
			op := data[:6]
			data = data[6:]
			fam := int(op[0]>>3&1) * 2 // 0: IPv4, 2: IPv6
			src, dst := addrs[fam], addrs[fam+1]
			sp, dp := uint16(op[2]&3)+1, uint16(op[2]>>2&3)+1
			if op[0]&0x10 != 0 {
				src, dst, sp, dp = dst, src, dp, sp
			}
			p := &packet.Packet{Family: packet.IPv4, Src: src, Dst: dst, HasL4: true, SrcPort: sp, DstPort: dp, Length: 40}
			if fam == 2 {
				p.Family = packet.IPv6
			}
			icmp := packet.ProtoICMP
			if fam == 2 {
				icmp = packet.ProtoICMPv6
			}
			switch op[0] & 7 {
			case 0, 5:
				p.Proto, p.TCPFlags = packet.ProtoTCP, op[1]
				p.TCPSeq, p.TCPAck = uint32(op[5]), uint32(op[5]>>4)
			case 1:
				p.Proto = packet.ProtoUDP
			case 2:
				p.Proto, p.ICMPType, p.ICMPID = icmp, op[1], sp
			case 3:
				p.Proto, p.HasL4 = packet.ProtoGRE, false
			case 4:
				p.Proto, p.ICMPType = icmp, 3
				if fam == 2 {
					p.ICMPType = 1
				}
				p.Inner = packet.Quoted{Valid: op[1]&1 == 0, Src: dst, Dst: src, Proto: packet.ProtoUDP, SrcPort: dp, DstPort: sp, ICMPID: dp}
				if op[1]&2 != 0 {
					p.Inner.Proto = packet.ProtoTCP
				}
			case 6:
				p.Proto, p.NonFirstFragment, p.HasL4 = packet.ProtoUDP, true, false
			case 7:
				p.Proto = packet.ProtoSCTP
			}
			clk.Advance(time.Duration(op[3]) * time.Second)
			r := tb.Track(p, int(op[5]), op[4]&1 != 0)
			// The twin takes the lookahead path for most packets and
			// Track for some, so the two paths must also agree on where
			// a flow lives.
			var r2 Result
			if op[3]%4 == 3 {
				r2 = twin.Track(p, int(op[5]), op[4]&1 != 0)
			} else {
				var la Lookahead
				twin.Prefetch(p, &la)
				twin.PrefetchEntry(&la)
				r2 = twin.TrackAhead(p, &la, int(op[5]), op[4]&1 != 0, clk.Now())
			}
			if r2 != r {
				t.Fatalf("twin answered %+v, Track %+v", r2, r)
			}
			switch {
			case r.State == nf.StateInvalid || r.State == nf.StateRelated:
				if r.Flow.Valid() || r.HasCache {
					t.Fatalf("%v packet carries a flow or cache: %+v", r.State, r)
				}
			case r.Flow.Valid():
				if _, ok := tb.Lookup(r.Flow); !ok {
					t.Fatalf("handle just returned is stale: %+v", r)
				}
				want, ok := stored[r.Flow]
				if r.HasCache != ok || r.HasCache && r.Cache != want {
					t.Fatalf("flow %+v: cache %v/%+v, stored %v/%+v", r.Flow, r.HasCache, r.Cache, ok, want)
				}
				if op[4]&2 != 0 {
					gen++
					c := Cache{Gen: gen, Value: uint64(op[5])}
					if !tb.SetCache(r.Flow, c) || !twin.SetCache(r.Flow, c) {
						t.Fatal("SetCache failed on a live handle")
					}
					stored[r.Flow] = c
				}
			}
			if op[4]&4 != 0 {
				tb.Expire(clk.Now())
				twin.Expire(clk.Now())
			}
			if op[4] == 0xff {
				tb.Flush()
				twin.Flush()
			}
			// Stale handles must stay stale: SetCache with every stored
			// handle either hits its own flow or nothing.
			for id, c := range stored {
				if _, ok := tb.Lookup(id); !ok {
					if tb.SetCache(id, c) {
						t.Fatalf("SetCache accepted a stale handle %+v", id)
					}
					delete(stored, id)
				}
			}
			checkInvariants(t, tb)
		}
	})
}
