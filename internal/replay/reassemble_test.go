package replay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// frag6 splits an IPv6 packet (no extension headers) with fragment headers.
func frag6(pkt []byte, id uint32, size int) [][]byte {
	next := pkt[6]
	payload := pkt[40:]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		h := bytes.Clone(pkt[:40])
		h[6] = 44
		binary.BigEndian.PutUint16(h[4:6], uint16(8+end-off))
		fo := uint16(off/8) << 3
		if end < len(payload) {
			fo |= 1
		}
		fh := []byte{next, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(fh[2:4], fo)
		binary.BigEndian.PutUint32(fh[4:8], id)
		out = append(out, append(append(h, fh...), payload[off:end]...))
	}
	return out
}

// withID sets an IPv4 packet's identification, as its fragments carry it.
func withID(pkt []byte, id uint16) []byte {
	binary.BigEndian.PutUint16(pkt[4:6], id)
	pkt[10], pkt[11] = 0, 0
	binary.BigEndian.PutUint16(pkt[10:12], packet.IPv4Checksum(pkt[:20]))
	return pkt
}

func udp(t *testing.T, src, dst string, dport uint16, n int) []byte {
	t.Helper()
	b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: packet.ProtoUDP,
		SrcPort: 5000, DstPort: dport, Payload: bytes.Repeat([]byte{'d'}, n)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReassembleInAnyOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pkt   []byte
		frags func([]byte) [][]byte
	}{
		{"ipv4", withID(udp(t, "192.0.2.1", "192.0.2.2", 53, 3000), 7), func(b []byte) [][]byte { return packet.Fragment4(b, 7, 1480) }},
		{"ipv6", udp(t, "2001:db8::1", "2001:db8::2", 53, 3000), func(b []byte) [][]byte { return frag6(b, 9, 1448) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := tc.frags(tc.pkt)
			if len(fs) != 3 {
				t.Fatalf("%d fragments", len(fs))
			}
			for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
				r := NewReassembler()
				var whole []byte
				for i, j := range order {
					w, frames, consumed := r.Add(fs[j], i+1, int64(i))
					if !consumed {
						t.Fatalf("fragment %d not taken", j)
					}
					if i < 2 && w != nil {
						t.Fatalf("complete after %d fragments", i+1)
					}
					if w != nil && fmt.Sprint(frames) != "[1 2 3]" {
						t.Errorf("fragments %v, want frames [1 2 3]", frames)
					}
					whole = w
				}
				if !bytes.Equal(whole, tc.pkt) {
					t.Errorf("order %v: reassembled %d bytes differ from the %d-byte original", order, len(whole), len(tc.pkt))
				}
				if len(r.pending) != 0 || len(r.Expired()) != 0 {
					t.Errorf("left state behind")
				}
			}
		})
	}
}

func TestReassembleGivesUp(t *testing.T) {
	pkt := udp(t, "192.0.2.1", "192.0.2.2", 53, 3000)
	fs := packet.Fragment4(pkt, 7, 1480)
	// Not a fragment.
	if _, _, consumed := NewReassembler().Add(pkt, 1, 0); consumed {
		t.Error("a whole packet was taken as a fragment")
	}
	// Timeout: the first fragment is released once 30 s pass.
	r := NewReassembler()
	r.Add(fs[0], 1, 0)
	if ex := r.Expired(); len(ex) != 0 {
		t.Fatalf("released early: %v", ex)
	}
	other := packet.Fragment4(udp(t, "192.0.2.3", "192.0.2.2", 53, 3000), 8, 1480)
	r.Add(other[0], 2, fragTimeout)
	if ex := r.Expired(); len(ex) != 1 || ex[0].N != 1 || !bytes.Equal(ex[0].Data, fs[0]) {
		t.Errorf("after the timeout released %d fragments", len(ex))
	}
	// Overlap: both fragments released, nothing assembled.
	r = NewReassembler()
	r.Add(fs[0], 1, 0)
	overlap := bytes.Clone(fs[1])
	binary.BigEndian.PutUint16(overlap[6:8], 0x2000|uint16(1000/8))
	if w, _, _ := r.Add(overlap, 2, 1); w != nil {
		t.Error("assembled overlapping fragments")
	}
	if ex := r.Expired(); len(ex) != 2 {
		t.Errorf("overlap released %d fragments, want 2", len(ex))
	}
	// Flush at the end of a capture.
	r = NewReassembler()
	r.Add(fs[1], 1, 0)
	r.Add(other[2], 2, 0)
	if ex := r.Flush(); len(ex) != 2 || ex[0].N != 1 || ex[1].N != 2 {
		t.Errorf("flush released %v", ex)
	}
	// The bound on pending datagrams.
	r = NewReassembler()
	for i := range maxPending + 10 {
		f := packet.Fragment4(pkt, uint16(i), 1480)
		r.Add(f[0], i+1, 0)
	}
	if len(r.pending) != maxPending || len(r.Expired()) != 10 {
		t.Errorf("%d pending", len(r.pending))
	}
}

// TestRunReassembles: a fragmented DNS datagram is decided once, whole, by
// the rule its ports match, as conntrack's defragmenter makes the live
// agent see it; without reassembly the non-first fragments, which carry no
// ports, fall to the default.
func TestRunReassembles(t *testing.T) {
	const policy = "version: 1\ndefault: drop\nrules:\n  - name: dns\n    match: {proto: udp, dport: 53}\n    action: accept\n"
	var fs []rawFrame
	at := time.Unix(10, 0)
	for _, f := range packet.Fragment4(udp(t, "192.0.2.1", "192.0.2.2", 53, 3000), 7, 1480) {
		fs = append(fs, rawFrame{at, f})
	}
	for _, f := range frag6(udp(t, "2001:db8::1", "2001:db8::2", 53, 2000), 9, 1448) {
		fs = append(fs, rawFrame{at, f})
	}
	file := rawPcap(fs, 0)
	got, sum := run(t, programFrom(t, policy), file, Options{Hook: nf.HookInput})
	if len(got) != 2 || got[0] != (outcome{N: 3, Verdict: "accept", Rule: "dns", Frags: 3}) || got[1] != (outcome{N: 5, Verdict: "accept", Rule: "dns", Frags: 2}) {
		t.Errorf("decided %+v", got)
	}
	if sum.Reassembled != 2 || sum.Fragments != 5 || sum.Decided != 2 || sum.Frames != 5 {
		t.Errorf("summary %+v", sum)
	}
	alone, _ := run(t, programFrom(t, policy), file, Options{Hook: nf.HookInput, NoReassembly: true})
	if len(alone) != 5 || alone[0].Rule != "dns" || alone[1].Rule != "default" || alone[3].Rule != "dns" || alone[4].Rule != "default" {
		t.Errorf("without reassembly %+v", alone)
	}
	// A datagram missing a fragment: its fragments are decided alone at
	// the end, and counted.
	part, sum := run(t, programFrom(t, policy), rawPcap(fs[:2], 0), Options{Hook: nf.HookInput})
	if len(part) != 2 || !part[0].Alone || part[0].Rule != "dns" || part[1].Rule != "default" || sum.Unreassembled != 2 {
		t.Errorf("incomplete datagram: %+v %+v", part, sum)
	}
}
