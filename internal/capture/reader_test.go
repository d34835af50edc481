package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testnet"
	"github.com/fwagent/fwagent/internal/testing/testpacket"
)

// readAll drains a reader.
func readAll(t *testing.T, r *Reader) []Frame {
	t.Helper()
	out, err := r.ReadAll()
	if err != nil {
		t.Fatalf("Next after %d frames: %v", len(out), err)
	}
	return out
}

// bufferWriter is a Writer into a fresh buffer.
func bufferWriter(t *testing.T) (*Writer, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return w, &buf
}

func TestRoundTrip(t *testing.T) {
	pkts := [][]byte{
		testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoTCP, SrcPort: 1, DstPort: 443, TCPFlags: packet.TCPSyn}),
		testpacket.Build(t, packet.Spec{Src: v6a, Dst: v6b, Proto: packet.ProtoUDP, SrcPort: 53, DstPort: 9, Payload: []byte("odd")}),
		testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoICMP, ICMPType: 8, Payload: make([]byte, 1400)}),
	}
	base := time.Date(2026, 11, 27, 12, 0, 0, 123456000, time.UTC)
	w, buf := bufferWriter(t)
	for i, p := range pkts {
		if err := w.Write(base.Add(time.Duration(i)*time.Second), p); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	frames := readAll(t, r)
	if len(frames) != len(pkts) || r.Skipped() != 0 {
		t.Fatalf("read %d frames (%d skipped), wrote %d", len(frames), r.Skipped(), len(pkts))
	}
	d := packet.NewDecoder()
	for i, f := range frames {
		if !bytes.Equal(f.Data, pkts[i]) || f.Index != i || f.Truncated {
			t.Errorf("frame %d: index %d truncated %v, data equal %v", i, f.Index, f.Truncated, bytes.Equal(f.Data, pkts[i]))
		}
		if want := base.Add(time.Duration(i) * time.Second); !f.Timestamp.Equal(want) {
			t.Errorf("frame %d: timestamp %v, want %v", i, f.Timestamp, want)
		}
		var p packet.Packet
		if err := d.Decode(f.Data, &p); err != nil {
			t.Errorf("frame %d: decode: %v", i, err)
		}
	}
	// The header says LINKTYPE_RAW, which is what Wireshark needs to see.
	if link := binary.LittleEndian.Uint32(buf.Bytes()[20:24]); link != linkRaw {
		t.Errorf("link type %d, want %d", link, linkRaw)
	}
}

func TestWriterCutsAtMaxFrame(t *testing.T) {
	w, buf := bufferWriter(t)
	big := testpacket.Build(t, packet.Spec{Src: v6a, Dst: v6b, Proto: packet.ProtoUDP, Payload: make([]byte, 65000)})
	big = append(big, make([]byte, MaxFrame)...) // beyond any real packet, to exceed the cut
	if err := w.Write(time.Unix(1, 0), big); err != nil {
		t.Fatal(err)
	}
	r, err := Open(buf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Data) != MaxFrame || !f.Truncated {
		t.Errorf("read %d bytes, truncated %v; want %d, true", len(f.Data), f.Truncated, MaxFrame)
	}
}

// TestTcpdumpReadsWriter checks the written file with a real pcap reader.
func TestTcpdumpReadsWriter(t *testing.T) {
	testnet.RequireCommands(t, "tcpdump")
	path := filepath.Join(t.TempDir(), "out.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{
		testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, SrcPort: 40000, DstPort: 4444, Payload: []byte("x")}),
		testpacket.Build(t, packet.Spec{Src: v6a, Dst: v6b, Proto: packet.ProtoTCP, SrcPort: 1234, DstPort: 8080, TCPFlags: packet.TCPSyn}),
	} {
		if err := w.Write(time.Unix(1700000000, 0), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out := testnet.TcpdumpRead(t, path)
	for _, want := range []string{"192.0.2.1.40000 > 192.0.2.2.4444: UDP", "2001:db8::1.1234 > 2001:db8::2.8080: Flags [S]"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tcpdump output lacks %q:\n%s", want, out)
		}
	}
}

func TestLinkTypes(t *testing.T) {
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	ip6 := testpacket.Build(t, packet.Spec{Src: v6a, Dst: v6b, Proto: packet.ProtoTCP, SrcPort: 3, DstPort: 4})
	le, be := binary.LittleEndian, binary.BigEndian
	tests := []struct {
		name   string
		link   uint32
		frames [][]byte
		want   [][]byte // IP packets expected, in order
		skip   int
	}{
		{"ethernet", linkEthernet, [][]byte{
			ether(etherIPv4, slices.Concat(ip4, make([]byte, 6))), // with padding to the minimum frame
			ether(etherIPv6, ip6),
			ether(0x0806, arpPkt),
			ether(etherVLAN, slices.Concat(tag(100, etherIPv6), ip6)),
			ether(etherQinQ, slices.Concat(tag(10, etherVLAN), tag(20, etherIPv4), ip4)),
			ether(etherQinQv1, slices.Concat(tag(10, 0x0806), arpPkt)),
			ether(etherIPv4, ip6), // says IPv4, is not
			macs,                  // too short for a header
			ether(etherVLAN, []byte{0, 1}),
		}, [][]byte{slices.Concat(ip4, make([]byte, 6)), ip6, ip6, ip4}, 5},
		{"dlt raw 12", linkRawDLT, [][]byte{ip4, ip6, {0x10, 0}, nil}, [][]byte{ip4, ip6}, 2},
		{"dlt raw 14", linkRawBSD, [][]byte{ip6}, [][]byte{ip6}, 0},
		{"linktype raw 101", linkRaw, [][]byte{ip4, ip6}, [][]byte{ip4, ip6}, 0},
		{"linktype ipv4", linkIPv4, [][]byte{ip4, ip6}, [][]byte{ip4}, 1},
		{"linktype ipv6", linkIPv6, [][]byte{ip4, ip6}, [][]byte{ip6}, 1},
		{"linux sll", linkSLL, [][]byte{sll(etherIPv4, ip4), sll(0x0806, arpPkt), sll(etherIPv6, ip6), sll(etherIPv4, nil)[:10]},
			[][]byte{ip4, ip6}, 2},
		{"linux sll2", linkSLL2, [][]byte{sll2(etherIPv6, ip6), sll2(0x0806, arpPkt), sll2(etherIPv4, ip4), sll2(etherIPv4, nil)[:19]},
			[][]byte{ip6, ip4}, 2},
		{"bsd null", linkNull, [][]byte{slices.Concat(le.AppendUint32(nil, 2), ip4), slices.Concat(le.AppendUint32(nil, 30), ip6), slices.Concat(be.AppendUint32(nil, 24), ip6), slices.Concat(le.AppendUint32(nil, 7), ip4), {2}},
			[][]byte{ip4, ip6, ip6}, 2},
		{"openbsd loop", linkLoop, [][]byte{slices.Concat(be.AppendUint32(nil, 2), ip4), slices.Concat(be.AppendUint32(nil, 28), ip6)},
			[][]byte{ip4, ip6}, 0},
	}
	for _, tt := range tests {
		for _, order := range []order{le, be} {
			t.Run(tt.name+"/"+order.String(), func(t *testing.T) {
				var recs []record
				for i, f := range tt.frames {
					recs = append(recs, record{ts: time.Unix(int64(1000+i), 5000), data: f})
				}
				r, err := Open(bytes.NewReader(pcapFile(tt.link, order, order == be, recs...)))
				if err != nil {
					t.Fatal(err)
				}
				got := readAll(t, r)
				if len(got) != len(tt.want) || r.Skipped() != tt.skip {
					t.Fatalf("got %d frames, %d skipped; want %d, %d", len(got), r.Skipped(), len(tt.want), tt.skip)
				}
				for i := range got {
					if !bytes.Equal(got[i].Data, tt.want[i]) {
						t.Errorf("frame %d: % x, want % x", i, got[i].Data, tt.want[i])
					}
					if got[i].Timestamp != time.Unix(int64(1000+got[i].Index), 5000).UTC() {
						t.Errorf("frame %d (index %d): timestamp %v", i, got[i].Index, got[i].Timestamp)
					}
				}
			})
		}
	}
}

func TestPcapng(t *testing.T) {
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	ip6 := testpacket.Build(t, packet.Spec{Src: v6a, Dst: v6b, Proto: packet.ProtoTCP, SrcPort: 3, DstPort: 4})
	for _, bo := range []order{binary.LittleEndian, binary.BigEndian} {
		t.Run(bo.String(), func(t *testing.T) {
			offset := bo.AppendUint64(nil, 100)
			file := slices.Concat(
				ngSHB(bo),
				ngIDB(bo, linkEthernet, 65535),
				ngIDB(bo, linkSLL2, 0, ngOpt(bo, optTSResol, []byte{9}), ngOpt(bo, optTSOffset, offset)),
				ngIDB(bo, 147, 0), // a user link type: not IP
				ngEPB(bo, 0, 1_700_000_000_250_000, ether(etherIPv4, ip4), 0),
				ngBlock(bo, 5, make([]byte, 20)),          // interface statistics: ignored
				ngBlock(bo, 0x40000bad, []byte("custom")), // custom block: ignored
				ngEPB(bo, 1, 1_700_000_000_000_000_007, sll2(etherIPv6, ip6), 0),
				ngEPB(bo, 2, 0, []byte{1, 2, 3}, 0),
				ngEPB(bo, 0, 0, ether(0x0806, arpPkt), 0),
				ngEPB(bo, 0, 0, ether(etherIPv4, ip4[:20]), len(ip4)+14), // cut by a snap length
				ngSPB(bo, ether(etherIPv6, ip6)),
				// A second section restarts interface numbering.
				ngSHB(bo),
				ngIDB(bo, linkRaw, 0, ngOpt(bo, optTSResol, []byte{0x80 | 10})),
				ngEPB(bo, 0, 3<<10|512, ip6, 0),
			)
			r, err := Open(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, r)
			want := []struct {
				data      []byte
				index     int
				ts        time.Time
				truncated bool
			}{
				{ip4, 0, time.Unix(1_700_000_000, 250_000_000), false},
				{ip6, 1, time.Unix(1_700_000_100, 7), false},
				{ip4[:20], 4, time.Unix(0, 0), true},
				{ip6, 5, time.Time{}, false},
				{ip6, 6, time.Unix(3, 500_000_000), false},
			}
			if len(got) != len(want) || r.Skipped() != 2 {
				t.Fatalf("got %d frames, %d skipped; want %d, 2", len(got), r.Skipped(), len(want))
			}
			for i, w := range want {
				g := got[i]
				if !bytes.Equal(g.Data, w.data) || g.Index != w.index || !g.Timestamp.Equal(w.ts) || g.Truncated != w.truncated {
					t.Errorf("frame %d: index %d ts %v truncated %v equal %v; want index %d ts %v truncated %v",
						i, g.Index, g.Timestamp, g.Truncated, bytes.Equal(g.Data, w.data), w.index, w.ts, w.truncated)
				}
			}
		})
	}
}

func TestGzip(t *testing.T) {
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP})
	for name, file := range map[string][]byte{
		"pcap":   pcapFile(linkRaw, binary.LittleEndian, false, record{ts: time.Unix(1, 0), data: ip4}),
		"pcapng": slices.Concat(ngSHB(binary.LittleEndian), ngIDB(binary.LittleEndian, linkRaw, 0), ngEPB(binary.LittleEndian, 0, 1e6, ip4, 0)),
	} {
		t.Run(name, func(t *testing.T) {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(file)
			zw.Close()
			r, err := Open(&z)
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, r)
			if len(got) != 1 || !bytes.Equal(got[0].Data, ip4) {
				t.Fatalf("got %d frames", len(got))
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	le := binary.LittleEndian
	for name, file := range map[string][]byte{
		"empty":                 nil,
		"text":                  []byte("hello, world\n"),
		"short pcap header":     pcapFile(linkRaw, le, false)[:20],
		"unsupported link type": pcapFile(147, le, false),
		"pcapng bad byte order": slices.Concat(ngSHB(le)[:8], []byte{1, 2, 3, 4}),
		"pcapng bad version":    with(ngSHB(le), func(b []byte) { b[12] = 2 }),
		"pcapng bad length":     with(ngSHB(le), func(b []byte) { b[4] = 27 }),
		"pcapng huge block":     with(ngSHB(le), func(b []byte) { le.PutUint32(b[4:], 1<<30) }),
		"pcapng cut short":      ngSHB(le)[:20],
		"gzip garbage":          {0x1f, 0x8b, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if r, err := Open(bytes.NewReader(file)); err == nil {
				t.Errorf("Open succeeded: %+v", r)
			}
		})
	}
}

func with(b []byte, f func([]byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

func TestNextErrors(t *testing.T) {
	le := binary.LittleEndian
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP})
	good := pcapFile(linkRaw, le, false, record{ts: time.Unix(1, 0), data: ip4}, record{ts: time.Unix(2, 0), data: ip4})
	ng := slices.Concat(ngSHB(le), ngIDB(le, linkRaw, 0))
	tests := []struct {
		name    string
		file    []byte
		wantErr error // nil: any error
	}{
		{"pcap cut in record header", good[:len(good)-len(ip4)-4], io.ErrUnexpectedEOF},
		{"pcap cut right after record header", good[:len(good)-len(ip4)], io.ErrUnexpectedEOF},
		{"pcap cut in data", good[:len(good)-3], io.ErrUnexpectedEOF},
		{"pcap record beyond MaxFrame", pcapFile(linkRaw, le, false, record{ts: time.Unix(1, 0), data: ip4}, record{data: make([]byte, MaxFrame+1)}), nil},
		{"pcapng cut in block", slices.Concat(ng, ngEPB(le, 0, 0, ip4, 0)[:30]), io.ErrUnexpectedEOF},
		{"pcapng trailing length mismatch", slices.Concat(ng, with(ngEPB(le, 0, 0, ip4, 0), func(b []byte) { b[len(b)-4]++ })), nil},
		{"pcapng unknown interface", slices.Concat(ng, ngEPB(le, 1, 0, ip4, 0)), nil},
		{"pcapng short tsoffset", slices.Concat(ngSHB(le), ngIDB(le, linkRaw, 0, ngOpt(le, optTSOffset, []byte{1, 2}))), nil},
		{"pcapng tsresol 2^64", slices.Concat(ngSHB(le), ngIDB(le, linkRaw, 0, ngOpt(le, optTSResol, []byte{0x80 | 64}))), nil},
		{"pcapng tsresol 10^20", slices.Concat(ngSHB(le), ngIDB(le, linkRaw, 0, ngOpt(le, optTSResol, []byte{20}))), nil},
		{"pcapng option past block", slices.Concat(ngSHB(le), ngIDB(le, linkRaw, 0, le.AppendUint32(le.AppendUint16(nil, optTSResol), 400))), nil},
		{"pcapng simple packet without interface", slices.Concat(ngSHB(le), ngSPB(le, ip4)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(bytes.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			for {
				_, err = r.Next()
				if err != nil {
					break
				}
			}
			if err == io.EOF {
				t.Fatal("clean EOF from a broken capture")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWriterConcurrent(t *testing.T) {
	w, buf := bufferWriter(t)
	pkt := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP, Payload: make([]byte, 100)})
	const writers, each = 4, 50
	errs := make(chan error, writers)
	for range writers {
		go func() {
			for range each {
				if err := w.Write(time.Unix(1, 0), pkt); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(buf)
	if err != nil {
		t.Fatal(err)
	}
	// Interleaved records would desynchronise the file and fail here.
	if got := readAll(t, r); len(got) != writers*each {
		t.Fatalf("read %d records, wrote %d", len(got), writers*each)
	}
}

// TestBadRecordsSkipped: a record whose captured length exceeds its
// original length (or its pcapng block) is skipped with a warning, and the
// frames after it are read, as tcpdump reads on.
func TestBadRecordsSkipped(t *testing.T) {
	le := binary.LittleEndian
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP})
	ng := slices.Concat(ngSHB(le), ngIDB(le, linkRaw, 0))
	files := map[string][]byte{
		"pcap caplen > len": pcapFile(linkRaw, le, false, record{ts: time.Unix(1, 0), data: ip4},
			record{ts: time.Unix(2, 0), data: ip4, origLen: 10}, record{ts: time.Unix(3, 0), data: ip4}),
		"pcapng caplen > len": slices.Concat(ng, ngEPB(le, 0, 0, ip4, 0), ngEPB(le, 0, 0, ip4, 10), ngEPB(le, 0, 0, ip4, 0)),
		"pcapng caplen past block": slices.Concat(ng, ngEPB(le, 0, 0, ip4, 0),
			with(ngEPB(le, 0, 0, ip4, 0), func(b []byte) { le.PutUint32(b[20:], 1000) }), ngEPB(le, 0, 0, ip4, 0)),
	}
	for name, file := range files {
		t.Run(name, func(t *testing.T) {
			r, err := Open(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			var warned []int
			r.Warn = func(frame int, msg string) { warned = append(warned, frame) }
			var idx []int
			for _, fr := range readAll(t, r) {
				idx = append(idx, fr.Index)
			}
			if fmt.Sprint(idx) != "[0 2]" || fmt.Sprint(warned) != "[2]" {
				t.Errorf("frames %v, warnings for frames %v; want [0 2] and [2]", idx, warned)
			}
			if by := r.SkippedBy(); r.Skipped() != 1 || by[SkipBadRecord] != 1 {
				t.Errorf("skipped %d: %v", r.Skipped(), by)
			}
		})
	}
}

// TestSkipReasons: every skipped frame is counted under its reason.
func TestSkipReasons(t *testing.T) {
	le := binary.LittleEndian
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP})
	eth := func(etherType uint16, payload []byte) []byte {
		h := make([]byte, 12)
		return append(binary.BigEndian.AppendUint16(h, etherType), payload...)
	}
	var tags []byte
	for range maxVLANTags + 1 {
		tags = append(tags, 0, 1, 0x81, 0x00)
	}
	file := slices.Concat(ngSHB(le), ngIDB(le, linkEthernet, 0), ngIDB(le, 147, 0), ngIDB(le, linkIPv6, 0),
		ngEPB(le, 0, 0, eth(etherIPv4, ip4), 0),
		ngEPB(le, 0, 0, eth(0x0806, make([]byte, 28)), 0),
		ngEPB(le, 0, 0, eth(etherVLAN, append(tags, ip4...)), 0),
		ngEPB(le, 1, 0, ip4, 0),
		ngEPB(le, 2, 0, ip4, 0),
		ngEPB(le, 0, 0, make([]byte, 6), 0),
	)
	r, err := Open(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	n := len(readAll(t, r))
	want := map[string]int{SkipNotIP: 1, SkipVLAN: 1, SkipLinkType + " 147": 1, SkipVersion: 1, SkipShort: 1}
	if got := r.SkippedBy(); n != 1 || fmt.Sprint(got) != fmt.Sprint(want) || r.Skipped() != 5 {
		t.Errorf("%d frames, skipped %d by %v; want 1, 5 by %v", n, r.Skipped(), got, want)
	}
}

// TestDirection: pcapng's epb_flags and a cooked header's packet type give
// the frame's direction.
func TestDirection(t *testing.T) {
	le := binary.LittleEndian
	ip4 := testpacket.Build(t, packet.Spec{Src: v4a, Dst: v4b, Proto: packet.ProtoUDP})
	epbFlags := func(flags uint32, data []byte) []byte {
		b := ngEPB(le, 0, 0, data, 0)
		body := b[8 : len(b)-4]
		body = append(body, ngOpt(le, optEPBFlags, le.AppendUint32(nil, flags))...)
		body = append(body, 0, 0, 0, 0)
		return ngBlock(le, ngEnhanced, body)
	}
	sll := func(pktType uint16, data []byte) []byte {
		h := binary.BigEndian.AppendUint16(nil, pktType)
		h = append(h, make([]byte, 12)...)
		return append(binary.BigEndian.AppendUint16(h, etherIPv4), data...)
	}
	file := slices.Concat(ngSHB(le), ngIDB(le, linkRaw, 0), ngIDB(le, linkSLL, 0),
		epbFlags(1, ip4), epbFlags(2, ip4), ngEPB(le, 0, 0, ip4, 0),
		ngEPB(le, 1, 0, sll(0, ip4), 0), ngEPB(le, 1, 0, sll(4, ip4), 0), ngEPB(le, 1, 0, sll(3, ip4), 0))
	r, err := Open(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fr := range readAll(t, r) {
		got = append(got, fr.Direction.String())
	}
	if want := "[in out unknown in out other]"; fmt.Sprint(got) != want {
		t.Errorf("directions %v, want %s", got, want)
	}
}
