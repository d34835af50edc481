package capture

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testpacket"
)

// BenchmarkReader reads a 1000-frame capture per iteration; allocations per
// op are per file (buffers), not per frame.
func BenchmarkReader(b *testing.B) {
	le := binary.LittleEndian
	ip4 := testpacket.Build(b, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2, Payload: make([]byte, 64)})
	var recs []record
	ng := slices.Concat(ngSHB(le), ngIDB(le, linkEthernet, 0))
	for i := range 1000 {
		recs = append(recs, record{ts: time.Unix(int64(i), 0), data: ether(etherIPv4, ip4)})
		ng = append(ng, ngEPB(le, 0, uint64(i), ether(etherIPv4, ip4), 0)...)
	}
	for name, file := range map[string][]byte{
		"pcap-ethernet":   pcapFile(linkEthernet, le, false, recs...),
		"pcapng-ethernet": ng,
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				r, err := Open(bytes.NewReader(file))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					_, err := r.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 1000 {
					b.Fatalf("read %d frames", n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/frame")
		})
	}
}

// BenchmarkWriter writes one packet per iteration.
func BenchmarkWriter(b *testing.B) {
	pkt := testpacket.Build(b, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, Payload: make([]byte, 64)})
	w, err := NewWriter(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Unix(1, 0)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(ts, pkt); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNextZeroAllocs: once the reader's buffers exist, reading a frame
// allocates nothing, so replaying a capture costs no garbage per packet.
func TestNextZeroAllocs(t *testing.T) {
	le := binary.LittleEndian
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	const n = 600
	var recs []record
	ng := slices.Concat(ngSHB(le), ngIDB(le, linkSLL2, 0, ngOpt(le, optTSResol, []byte{9})))
	for i := range n {
		recs = append(recs, record{ts: time.Unix(int64(i), 0), data: ether(etherVLAN, slices.Concat(tag(7, etherIPv4), ip4))})
		ng = append(ng, ngEPB(le, 0, uint64(i), sll2(etherIPv4, ip4), 0)...)
	}
	for name, file := range map[string][]byte{
		"pcap":   pcapFile(linkEthernet, le, true, recs...),
		"pcapng": ng,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Open(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			var readErr error
			allocs := testing.AllocsPerRun(n-10, func() {
				if _, err := r.Next(); err != nil {
					readErr = err
				}
			})
			if readErr != nil {
				t.Fatal(readErr)
			}
			if allocs != 0 {
				t.Errorf("Next allocates %.1f times per frame, want 0", allocs)
			}
		})
	}
}
