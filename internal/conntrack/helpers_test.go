package conntrack

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
)

// fakeClock is a settable clock for tests.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() int64              { return c.ns.Load() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestTable(t testing.TB, cfg Config) (*Table, *fakeClock) {
	t.Helper()
	clk := &fakeClock{}
	clk.ns.Store(int64(time.Hour)) // not zero, to catch code that treats 0 as unset
	cfg.Now = clk.Now
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	return New(cfg), clk
}

func famOf(a netip.Addr) packet.Family {
	if a.Is4() {
		return packet.IPv4
	}
	return packet.IPv6
}

func tcpPkt(src, dst string, sp, dp uint16, flags uint8, seq, ack uint32, payload int) *packet.Packet {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	return &packet.Packet{
		Family: famOf(s), Src: s, Dst: d, Proto: packet.ProtoTCP, Length: 40 + payload,
		HasL4: true, SrcPort: sp, DstPort: dp, TCPFlags: flags, TCPSeq: seq, TCPAck: ack,
		Payload: make([]byte, payload),
	}
}

func udpPkt(src, dst string, sp, dp uint16) *packet.Packet {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	return &packet.Packet{
		Family: famOf(s), Src: s, Dst: d, Proto: packet.ProtoUDP, Length: 28,
		HasL4: true, SrcPort: sp, DstPort: dp,
	}
}

func icmpPkt(src, dst string, typ uint8, id uint16) *packet.Packet {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	proto := packet.ProtoICMP
	if s.Is6() {
		proto = packet.ProtoICMPv6
	}
	return &packet.Packet{
		Family: famOf(s), Src: s, Dst: d, Proto: proto, Length: 28,
		HasL4: true, ICMPType: typ, ICMPID: id,
	}
}

func icmpErr(src, dst string, typ uint8, q packet.Quoted) *packet.Packet {
	p := icmpPkt(src, dst, typ, 0)
	p.Inner = q
	return p
}

func quote(proto uint8, src, dst string, sp, dp, id uint16) packet.Quoted {
	return packet.Quoted{
		Valid: true, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Proto: proto, SrcPort: sp, DstPort: dp, ICMPID: id,
	}
}

// checkInvariants verifies the index against the entries: every live entry
// is reachable from its home slot, every slot names a live entry with the
// right hash bits, and the counts agree.
func checkInvariants(t testing.TB, tb *Table) {
	t.Helper()
	total := 0
	for si := range tb.shards {
		s := &tb.shards[si]
		s.mu.Lock()
		slots := 0
		mask := uint64(len(s.slots) - 1)
		for i, v := range s.slots {
			if v == 0 {
				continue
			}
			slots++
			idx := uint32(v) - 1
			if idx >= s.used {
				t.Fatalf("shard %d slot %d: index %d beyond used %d", si, i, idx, s.used)
			}
			e := s.entry(idx)
			if e.flags&fInUse == 0 {
				t.Fatalf("shard %d slot %d: entry %d not in use", si, i, idx)
			}
			h := e.key.hash(&tb.seed)
			if h>>tb.shardShift != uint64(si) || h&0xffffffff != v>>32 {
				t.Fatalf("shard %d slot %d: hash bits do not match the key", si, i)
			}
			for j := h & 0xffffffff & mask; j != uint64(i); j = (j + 1) & mask {
				if s.slots[j] == 0 {
					t.Fatalf("shard %d slot %d: empty slot %d between home and entry", si, i, j)
				}
			}
		}
		live := 0
		for idx := range s.used {
			if s.entry(idx).flags&fInUse != 0 {
				live++
			}
		}
		if slots != s.n || live != s.n {
			t.Fatalf("shard %d: n=%d slots=%d live entries=%d", si, s.n, slots, live)
		}
		total += s.n
		s.mu.Unlock()
	}
	if int64(total) != tb.count.Load() {
		t.Fatalf("shards hold %d flows, count says %d", total, tb.count.Load())
	}
	if total > tb.maxFlows {
		t.Fatalf("%d flows over the cap %d", total, tb.maxFlows)
	}
}
