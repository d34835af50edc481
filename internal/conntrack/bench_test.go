package conntrack

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// threadCPU is the CPU time of the calling OS thread. Benchmarks lock their
// goroutine to its thread and report cpu-ns/op beside ns/op: other processes
// on a small shared machine inflate wall time, not this thread's CPU time.
func threadCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// cpuTimer measures the benchmark goroutine's CPU time between start and
// report.
type cpuTimer struct{ start int64 }

func startCPU(b *testing.B) *cpuTimer {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	return &cpuTimer{start: threadCPU()}
}

func (c *cpuTimer) report(b *testing.B, per int) {
	if per > 0 {
		b.ReportMetric(float64(threadCPU()-c.start)/float64(per), "cpu-ns/op")
	}
}

var benchSizes = []int{1_000, 100_000, 1_000_000}

// tuple is what changes between flows in the benchmarks; the loop copies it
// into one reused Packet, as a decoder fills one Packet per worker, so the
// numbers measure the table and not cache misses on a million Packets.
type tuple struct {
	src   netip.Addr
	sport uint16
}

func benchTuple(i int) tuple {
	return tuple{
		src:   netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
		sport: uint16(1024 + i%60000),
	}
}

func benchPacket() *packet.Packet {
	return &packet.Packet{
		Family: packet.IPv4, Dst: netip.MustParseAddr("192.0.2.1"), Proto: packet.ProtoUDP,
		Length: 100, HasL4: true, DstPort: 53,
	}
}

// filledTable returns a table at its cap of n flows, the flows' tuples in
// random order (not the insertion order), and the heap bytes the table takes
// per flow.
func filledTable(b *testing.B, n int) (*Table, []tuple, int64, float64) {
	b.Helper()
	tuples := make([]tuple, n)
	for i := range tuples {
		tuples[i] = benchTuple(i)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { tuples[i], tuples[j] = tuples[j], tuples[i] })
	p := benchPacket()
	now := int64(time.Hour)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	tb := New(Config{MaxFlows: n, Seed: 7, Now: func() int64 { return now }})
	for i := range tuples {
		p.Src, p.SrcPort = tuples[i].src, tuples[i].sport
		tb.TrackAt(p, 100, false, now)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if tb.Len() != n {
		b.Fatalf("table holds %d flows, want %d", tb.Len(), n)
	}
	// Look up in another random order than the insertion order, which
	// would otherwise walk each shard's entries in sequence.
	rand.New(rand.NewPCG(3, 4)).Shuffle(n, func(i, j int) { tuples[i], tuples[j] = tuples[j], tuples[i] })
	perFlow := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(n)
	runtime.KeepAlive(tb)
	return tb, tuples, now, perFlow
}

// BenchmarkLookupHit looks flows up one at a time in random order, the worst
// case: in a table larger than the cache each lookup waits out two memory
// loads in a row (index slot, then entry; see bench/README.md, In-process
// path). The agent looks packets up in groups instead
// (BenchmarkLookupHitBatch).
func BenchmarkLookupHit(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			tb, tuples, now, perFlow := filledTable(b, n)
			p := benchPacket()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				tu := &tuples[i%n]
				p.Src, p.SrcPort = tu.src, tu.sport
				if r := tb.TrackAt(p, 100, false, now); !r.Flow.Valid() {
					b.Fatal("miss")
				}
			}
			cpu.report(b, b.N)
			b.ReportMetric(perFlow, "bytes/flow")
		})
	}
}

// lookupBatch is how many packets BenchmarkLookupHitBatch looks up
// together, as the queue reader hands the pipeline a read of packets.
const lookupBatch = 8

// BenchmarkLookupHitBatch is BenchmarkLookupHit the way the pipeline looks
// up a batch of packets: Prefetch for each, PrefetchEntry for each, then
// TrackAhead for each, so the batch's memory loads overlap. ns/op is per
// packet.
func BenchmarkLookupHitBatch(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			tb, tuples, now, perFlow := filledTable(b, n)
			var pkts [lookupBatch]packet.Packet
			var las [lookupBatch]Lookahead
			for j := range pkts {
				pkts[j] = *benchPacket()
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(b)
			next := 0
			for i := 0; i < b.N; i += lookupBatch {
				m := min(lookupBatch, b.N-i)
				for j := range m {
					tu := &tuples[next]
					if next++; next == n {
						next = 0
					}
					pkts[j].Src, pkts[j].SrcPort = tu.src, tu.sport
					tb.Prefetch(&pkts[j], &las[j])
				}
				for j := range m {
					tb.PrefetchEntry(&las[j])
				}
				for j := range m {
					if r := tb.TrackAhead(&pkts[j], &las[j], 100, false, now); !r.Flow.Valid() {
						b.Fatal("miss")
					}
				}
			}
			cpu.report(b, b.N)
			b.ReportMetric(perFlow, "bytes/flow")
		})
	}
}

// BenchmarkLookupHitHot looks up a working set of 1024 flows inside a table
// of n: at any instant only some flows of a big table are active, so this is
// the common case, and BenchmarkLookupHit (all flows in random order) the
// worst.
func BenchmarkLookupHitHot(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			tb, tuples, now, _ := filledTable(b, n)
			hot := tuples[:min(n, 1024)]
			p := benchPacket()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				tu := &hot[i%len(hot)]
				p.Src, p.SrcPort = tu.src, tu.sport
				if r := tb.TrackAt(p, 100, false, now); !r.Flow.Valid() {
					b.Fatal("miss")
				}
			}
			cpu.report(b, b.N)
		})
	}
}

func BenchmarkLookupHitParallel(b *testing.B) {
	tb, tuples, now, _ := filledTable(b, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := benchPacket()
		i := rand.IntN(len(tuples))
		for pb.Next() {
			tu := &tuples[i%len(tuples)]
			p.Src, p.SrcPort = tu.src, tu.sport
			tb.TrackAt(p, 100, false, now)
			i++
		}
	})
}

// BenchmarkInsert creates new flows in a table held at its cap of n flows,
// so each insert also evicts one: the steady state of a full table.
func BenchmarkInsert(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			tb, _, now, _ := filledTable(b, n)
			p := benchPacket()
			p.Dst = netip.MustParseAddr("192.0.2.2") // tuples unseen so far
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				tu := benchTuple(i)
				p.Src, p.SrcPort, p.DstPort = tu.src, tu.sport, uint16(i>>24)
				if r := tb.TrackAt(p, 100, false, now); r.State != nf.StateNew {
					b.Fatalf("insert %d: %v", i, r.State)
				}
			}
			cpu.report(b, b.N)
		})
	}
}

// BenchmarkExpire sweeps a table of n expired flows; ns/op is one Expire
// call (one batch), ns/flow the cost per flow removed.
func BenchmarkExpire(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			tb, tuples, now, _ := filledTable(b, n)
			p := benchPacket()
			later := now + int64(time.Hour)
			removed := 0
			var cpuNs int64
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if tb.Len() == 0 {
					b.StopTimer()
					for j := range tuples {
						p.Src, p.SrcPort = tuples[j].src, tuples[j].sport
						tb.TrackAt(p, 100, false, now)
					}
					b.StartTimer()
				}
				c0 := threadCPU()
				removed += tb.Expire(later)
				cpuNs += threadCPU() - c0
			}
			if removed > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(removed), "ns/flow")
				b.ReportMetric(float64(cpuNs)/float64(removed), "cpu-ns/flow")
			}
		})
	}
}

// BenchmarkInvalid is the cost of a flood of packets that start nothing
// (ACKs without a flow).
func BenchmarkInvalid(b *testing.B) {
	tb := New(Config{MaxFlows: 1000})
	p := benchPacket()
	p.Proto, p.TCPFlags = packet.ProtoTCP, packet.TCPAck
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		tu := benchTuple(i)
		p.Src, p.SrcPort = tu.src, tu.sport
		tb.TrackAt(p, 100, false, 1)
	}
	cpu.report(b, b.N)
}
