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

// FuzzReader feeds arbitrary files to the reader: it must never panic, every
// frame it returns must start like an IP packet, and indices must advance.
func FuzzReader(f *testing.F) {
	le, be := binary.LittleEndian, binary.BigEndian
	ip4 := testpacket.Build(f, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	ip6 := testpacket.Build(f, packet.Spec{Src: v6a, Dst: v6b, Proto: packet.ProtoTCP, SrcPort: 3, DstPort: 4})
	ts := time.Unix(1_700_000_000, 0)
	f.Add(pcapFile(linkEthernet, le, false, record{ts: ts, data: ether(etherIPv4, ip4)}, record{ts: ts, data: ether(etherVLAN, slices.Concat(tag(5, etherIPv6), ip6))}))
	f.Add(pcapFile(linkSLL2, be, true, record{ts: ts, data: sll2(etherIPv6, ip6)}, record{ts: ts, data: sll2(0x0806, arpPkt)}))
	f.Add(pcapFile(linkSLL, le, false, record{ts: ts, data: sll(etherIPv4, ip4)}))
	f.Add(pcapFile(linkNull, le, false, record{ts: ts, data: slices.Concat(le.AppendUint32(nil, 30), ip6)}))
	f.Add(pcapFile(linkRaw, le, false, record{ts: ts, data: ip4, origLen: 1000}))
	f.Add(slices.Concat(ngSHB(le), ngIDB(le, linkEthernet, 0, ngOpt(le, optTSResol, []byte{9}), ngOpt(le, optTSOffset, le.AppendUint64(nil, 5))),
		ngEPB(le, 0, 12345, ether(etherIPv4, ip4), 0), ngSPB(le, ether(etherIPv6, ip6)), ngBlock(le, 5, make([]byte, 8))))
	f.Add(slices.Concat(ngSHB(be), ngIDB(be, linkSLL2, 64), ngEPB(be, 0, 1, sll2(etherIPv6, ip6), 0), ngSHB(le), ngIDB(le, linkRaw, 0), ngEPB(le, 0, 2, ip4, 0)))
	f.Fuzz(func(t *testing.T, file []byte) {
		r, err := Open(bytes.NewReader(file))
		if err != nil {
			return
		}
		last := -1
		for range 10000 {
			fr, err := r.Next()
			if err != nil {
				if err != io.EOF && fr.Data != nil {
					t.Fatal("frame data returned with an error")
				}
				return
			}
			if len(fr.Data) == 0 || (fr.Data[0]>>4 != 4 && fr.Data[0]>>4 != 6) {
				t.Fatalf("frame %d does not start with an IP version: % x", fr.Index, fr.Data[:min(len(fr.Data), 4)])
			}
			if len(fr.Data) > MaxFrame {
				t.Fatalf("frame %d of %d bytes", fr.Index, len(fr.Data))
			}
			if fr.Index <= last || fr.Index-last-1 > r.Skipped() {
				t.Fatalf("index %d after %d with %d skipped", fr.Index, last, r.Skipped())
			}
			last = fr.Index
		}
	})
}
