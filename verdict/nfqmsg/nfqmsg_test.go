package nfqmsg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"syscall"
	"testing"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nlmsg"
)

// kattr is an attribute of a message the test builds the way the kernel
// does.
type kattr struct {
	typ uint16
	val []byte
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func pktHdr(id uint32, proto uint16, hook uint8) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	b = binary.BigEndian.AppendUint16(b, proto)
	return append(b, hook)
}

// kmsg builds one netlink message like nfqnl_build_packet_message: attributes
// padded to 4 bytes except the last, and nlmsg_len counting no trailing pad.
func kmsg(typ uint16, queue uint16, attrs ...kattr) []byte {
	b := make([]byte, nlmsg.HdrLen, 256)
	binary.NativeEndian.PutUint16(b[4:6], typ)
	b = append(b, unix.AF_UNSPEC, 0)
	b = binary.BigEndian.AppendUint16(b, queue)
	for i, a := range attrs {
		b = binary.NativeEndian.AppendUint16(b, uint16(nlmsg.AttrHdrLen+len(a.val)))
		b = binary.NativeEndian.AppendUint16(b, a.typ)
		b = append(b, a.val...)
		if i < len(attrs)-1 {
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
	}
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	return b
}

// datagram joins messages, padding all but the last to 4 bytes.
func datagram(msgs ...[]byte) []byte {
	var b []byte
	for i, m := range msgs {
		b = append(b, m...)
		if i < len(msgs)-1 {
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
	}
	return b
}

func errMsg(errno int32, seq uint32) []byte {
	b := make([]byte, nlmsg.HdrLen+4+nlmsg.HdrLen)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], nlmsg.TypeError)
	binary.NativeEndian.PutUint32(b[16:20], uint32(errno))
	binary.NativeEndian.PutUint32(b[20+8:20+12], seq)
	return b
}

func TestParse(t *testing.T) {
	payload := []byte{0x45, 0, 0, 29, 1, 2, 3, 4, 5}
	full := kmsg(typePacket, 3,
		kattr{attrPacketHdr, pktHdr(42, unix.ETH_P_IP, unix.NF_INET_LOCAL_IN)},
		kattr{attrMark, be32(0x10)},
		kattr{attrInDev, be32(7)},
		kattr{attrOutDev, be32(9)},
		kattr{attrSkbInfo, be32(1)},
		kattr{attrCapLen, be32(1500)},
		kattr{attrUID, be32(1000)},
		kattr{attrGID, be32(100)},
		kattr{18 /* SECCTX, skipped */, be32(1)},
		kattr{attrPayload, payload},
	)
	noMark := func(id uint32, p []byte) []byte {
		return kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(id, unix.ETH_P_IPV6, unix.NF_INET_FORWARD)}, kattr{attrPayload, p})
	}
	tests := []struct {
		name    string
		in      []byte
		want    []Packet
		info    Info
		wantErr error
	}{
		{
			name: "all attributes",
			in:   full,
			want: []Packet{{ID: 42, Queue: 3, HwProtocol: unix.ETH_P_IP, Hook: unix.NF_INET_LOCAL_IN, HasMark: true, Mark: 0x10, InDev: 7, OutDev: 9, SkbInfo: 1, CapLen: 1500, HasUID: true, UID: 1000, HasGID: true, GID: 100, Payload: payload}},
		},
		{
			name: "odd payloads, several messages",
			in:   datagram(noMark(1, []byte{1}), noMark(2, []byte{1, 2, 3}), noMark(3, []byte{1, 2, 3, 4, 5, 6, 7})),
			want: []Packet{
				{ID: 1, HwProtocol: unix.ETH_P_IPV6, Hook: unix.NF_INET_FORWARD, Payload: []byte{1}},
				{ID: 2, HwProtocol: unix.ETH_P_IPV6, Hook: unix.NF_INET_FORWARD, Payload: []byte{1, 2, 3}},
				{ID: 3, HwProtocol: unix.ETH_P_IPV6, Hook: unix.NF_INET_FORWARD, Payload: []byte{1, 2, 3, 4, 5, 6, 7}},
			},
		},
		{
			name: "empty payload attribute",
			in:   noMark(5, []byte{}),
			want: []Packet{{ID: 5, HwProtocol: unix.ETH_P_IPV6, Hook: unix.NF_INET_FORWARD, Payload: []byte{}}},
		},
		{
			name: "cut inside the payload",
			in:   full[:len(full)-3],
			want: []Packet{{ID: 42, Queue: 3, HwProtocol: unix.ETH_P_IP, Hook: unix.NF_INET_LOCAL_IN, HasMark: true, Mark: 0x10, InDev: 7, OutDev: 9, SkbInfo: 1, CapLen: 1500, HasUID: true, UID: 1000, HasGID: true, GID: 100, Truncated: true}},
		},
		{
			name: "cut inside the packet header",
			in:   full[:nlmsg.HdrLen+nlmsg.NfGenLen+6],
			info: Info{NoID: 1},
		},
		{
			name: "no packet header",
			in:   kmsg(typePacket, 0, kattr{attrPayload, payload}),
			info: Info{NoID: 1},
		},
		{
			name: "short packet header",
			in:   kmsg(typePacket, 0, kattr{attrPacketHdr, []byte{0, 0, 0, 1, 8, 0}}),
			info: Info{NoID: 1},
		},
		{
			name: "verdict refused, then a packet",
			in:   datagram(errMsg(-int32(syscall.ENOENT), 9), noMark(7, []byte{9})),
			want: []Packet{{ID: 7, HwProtocol: unix.ETH_P_IPV6, Hook: unix.NF_INET_FORWARD, Payload: []byte{9}}},
			info: Info{KernelErrors: 1, LastErrno: syscall.ENOENT},
		},
		{
			name: "ack",
			in:   errMsg(0, 77),
			info: Info{Acks: 1, AckSeq: 77},
		},
		{
			name: "other message types are skipped",
			in:   datagram(kmsg(typeConfig, 0), noMark(8, []byte{1})),
			want: []Packet{{ID: 8, HwProtocol: unix.ETH_P_IPV6, Hook: unix.NF_INET_FORWARD, Payload: []byte{1}}},
			info: Info{Other: 1},
		},
		{
			name:    "header shorter than a netlink header",
			in:      []byte{1, 2, 3},
			wantErr: ErrMalformed,
		},
		{
			name:    "nlmsg_len below the header size",
			in:      append(datagram(noMark(1, []byte{1, 2, 3, 4})), 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
			want:    []Packet{{ID: 1, HwProtocol: unix.ETH_P_IPV6, Hook: unix.NF_INET_FORWARD, Payload: []byte{1, 2, 3, 4}}},
			wantErr: ErrMalformed,
		},
		{
			name: "empty datagram",
			in:   []byte{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, info, err := Parse(tt.in, make([]Packet, 0, 4))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if info != tt.info {
				t.Errorf("info = %+v, want %+v", info, tt.info)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d packets %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if !bytes.Equal(g.Payload, w.Payload) || (g.Payload == nil) != (w.Payload == nil) {
					t.Errorf("packet %d payload = %v, want %v", i, g.Payload, w.Payload)
				}
				g.Payload, w.Payload = nil, nil
				if !reflect.DeepEqual(g, w) {
					t.Errorf("packet %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// TestParseAttrBadLength covers an attribute whose length is below its own
// header: parsing stops there, keeping the id found before it.
func TestParseAttrBadLength(t *testing.T) {
	m := kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(3, 0, 0)}, kattr{attrPayload, []byte{1, 2, 3, 4}})
	// Second attribute starts at 16+4+12 = 32; make its length 2.
	binary.NativeEndian.PutUint16(m[32:34], 2)
	got, _, err := Parse(m, nil)
	if err != nil || len(got) != 1 || got[0].ID != 3 || !got[0].Truncated || got[0].Payload != nil {
		t.Fatalf("Parse = %+v, %v; want id 3, truncated, no payload", got, err)
	}
}

// TestParseAliasesBuffer proves Payload is a view of the input, capped so an
// append cannot clobber the next message.
func TestParseAliasesBuffer(t *testing.T) {
	b := datagram(
		kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(1, 0, 0)}, kattr{attrPayload, []byte{1, 2, 3}}),
		kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(2, 0, 0)}, kattr{attrPayload, []byte{4, 5}}),
	)
	got, _, err := Parse(b, nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("Parse = %v, %v", got, err)
	}
	got[0].Payload[0] = 0xee
	if !bytes.Contains(b, []byte{0xee, 2, 3}) {
		t.Error("Payload does not alias the buffer")
	}
	if cap(got[0].Payload) != 3 {
		t.Errorf("cap(Payload) = %d, want 3", cap(got[0].Payload))
	}
	_ = append(got[0].Payload, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9)
	if got2, _, _ := Parse(b, nil); got2[1].ID != 2 || !bytes.Equal(got2[1].Payload, []byte{4, 5}) {
		t.Errorf("append through Payload changed the next message: %+v", got2[1])
	}
}

// TestParseMatchesNetlinkEncoding parses a message built by mdlayher/netlink,
// the library go-nfqueue decodes with.
func TestParseMatchesNetlinkEncoding(t *testing.T) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: attrPacketHdr, Data: pktHdr(0xdeadbeef, unix.ETH_P_IP, unix.NF_INET_LOCAL_OUT)},
		{Type: attrMark, Data: be32(0xabcdef01)},
		{Type: attrOutDev, Data: be32(3)},
		{Type: attrPayload, Data: []byte{0x45, 1, 2, 3, 4}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := netlink.Message{
		Header: netlink.Header{Type: typePacket, Length: uint32(nlmsg.HdrLen + nlmsg.NfGenLen + len(attrs))},
		Data:   append([]byte{unix.AF_INET, 0, 0, 5}, attrs...),
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Parse(b, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("Parse = %+v, %v", got, err)
	}
	p := got[0]
	if p.ID != 0xdeadbeef || p.Queue != 5 || p.Hook != unix.NF_INET_LOCAL_OUT || p.Mark != 0xabcdef01 || !p.HasMark || p.OutDev != 3 || !bytes.Equal(p.Payload, []byte{0x45, 1, 2, 3, 4}) {
		t.Errorf("Parse = %+v", p)
	}
}

// decoded is a verdict message as an independent decoder (mdlayher/netlink)
// reads it.
type decoded struct {
	typ     uint16
	queue   uint16
	code    uint32
	id      uint32
	hasMark bool
	mark    uint32
}

func decodeVerdicts(t *testing.T, b []byte) []decoded {
	t.Helper()
	var out []decoded
	for len(b) > 0 {
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if m.Header.Flags != netlink.Request {
			t.Errorf("flags = %v, want request only (no ack: errors come back unasked)", m.Header.Flags)
		}
		d := decoded{typ: uint16(m.Header.Type), queue: binary.BigEndian.Uint16(m.Data[2:4])}
		ad, err := netlink.NewAttributeDecoder(m.Data[nlmsg.NfGenLen:])
		if err != nil {
			t.Fatal(err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			switch ad.Type() {
			case attrVerdictHdr:
				v := ad.Bytes()
				d.code, d.id = binary.BigEndian.Uint32(v[0:4]), binary.BigEndian.Uint32(v[4:8])
			case attrMark:
				d.hasMark, d.mark = true, ad.Uint32()
			}
		}
		if err := ad.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
		b = b[nlmsg.Align(int(m.Header.Length)):]
	}
	return out
}

func TestAppendVerdicts(t *testing.T) {
	acc, drop := Verdict{Code: Accept}, Verdict{Code: Drop}
	mark := func(c, m uint32) Verdict { return Verdict{Code: c, SetMark: true, Mark: m} }
	ids := func(ids ...uint32) []Packet {
		p := make([]Packet, len(ids))
		for i, id := range ids {
			p[i].ID = id
		}
		return p
	}
	V, B := uint16(typeVerdict), uint16(typeVerdictBatch)
	tests := []struct {
		name    string
		pkts    []Packet
		vs      []Verdict
		noBatch bool
		want    []decoded
	}{
		{"empty", nil, nil, false, nil},
		{"one", ids(5), []Verdict{acc}, false, []decoded{{V, 9, Accept, 5, false, 0}}},
		{"run of accepts", ids(1, 2, 3, 4), []Verdict{acc, acc, acc, acc}, false, []decoded{{B, 9, Accept, 4, false, 0}}},
		{"gaps in ids still a run", ids(1, 5, 9), []Verdict{drop, drop, drop}, false, []decoded{{B, 9, Drop, 9, false, 0}}},
		{"runs split by verdict", ids(1, 2, 3, 4, 5), []Verdict{acc, acc, drop, acc, acc}, false,
			[]decoded{{B, 9, Accept, 2, false, 0}, {V, 9, Drop, 3, false, 0}, {B, 9, Accept, 5, false, 0}}},
		{"a run with one mark is one batch carrying it", ids(1, 2, 3), []Verdict{mark(Repeat, 7), mark(Repeat, 7), acc}, false,
			[]decoded{{B, 9, Repeat, 2, true, 7}, {V, 9, Accept, 3, false, 0}}},
		{"different marks split a run", ids(1, 2, 3), []Verdict{mark(Repeat, 7), mark(Repeat, 8), mark(Repeat, 8)}, false,
			[]decoded{{V, 9, Repeat, 1, true, 7}, {B, 9, Repeat, 3, true, 8}}},
		{"a mark splits a run", ids(1, 2, 3), []Verdict{acc, mark(Accept, 1), acc}, false,
			[]decoded{{V, 9, Accept, 1, false, 0}, {V, 9, Accept, 2, true, 1}, {V, 9, Accept, 3, false, 0}}},
		{"ids out of order break the run", ids(4, 3, 5), []Verdict{acc, acc, acc}, false,
			[]decoded{{V, 9, Accept, 4, false, 0}, {B, 9, Accept, 5, false, 0}}},
		{"wrap-around is in order", ids(0xfffffffe, 0xffffffff, 0, 1), []Verdict{acc, acc, acc, acc}, false,
			[]decoded{{B, 9, Accept, 1, false, 0}}},
		{"batching disabled", ids(1, 2), []Verdict{acc, acc}, true,
			[]decoded{{V, 9, Accept, 1, false, 0}, {V, 9, Accept, 2, false, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEncoder(9, unix.AF_UNSPEC, 1)
			if tt.noBatch {
				e.DisableBatch()
			}
			e.AppendVerdicts(tt.pkts, tt.vs)
			got := decodeVerdicts(t, e.Bytes())
			if len(got) != len(tt.want) || e.Messages() != len(tt.want) {
				t.Fatalf("got %d messages (%d counted) %+v, want %+v", len(got), e.Messages(), got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("message %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			e.Reset()
			if len(e.Bytes()) != 0 || e.Messages() != 0 {
				t.Error("Reset left messages")
			}
		})
	}
}

// TestEncoderMatchesGoNfqueue compares our verdict messages byte for byte
// with what go-nfqueue sends for the same verdict, sequence number and port
// id aside (we send 0 as the kernel ignores both).
func TestEncoderMatchesGoNfqueue(t *testing.T) {
	q, err := nfqueue.Open(&nfqueue.Config{NfQueue: 9, AfFamily: unix.AF_UNSPEC, Copymode: nfqueue.NfQnlCopyPacket})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot open a netfilter netlink socket: %v", err)
		}
		t.Skipf("cannot open a netfilter netlink socket: %v", err)
	}
	q.Con.Close()
	var sent []netlink.Message
	q.Con = nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		sent = append(sent, req...)
		return nil, nil
	})
	defer q.Close()

	tests := []struct {
		name  string
		send  func() error
		build func(e *Encoder)
	}{
		{"accept", func() error { return q.SetVerdict(100, nfqueue.NfAccept) }, func(e *Encoder) { e.AppendVerdict(100, Verdict{Code: Accept}) }},
		{"drop", func() error { return q.SetVerdict(0xfffffff0, nfqueue.NfDrop) }, func(e *Encoder) { e.AppendVerdict(0xfffffff0, Verdict{Code: Drop}) }},
		{"repeat with mark", func() error { return q.SetVerdictWithOption(7, nfqueue.NfRepeat, nfqueue.WithMark(0x80001234)) },
			func(e *Encoder) { e.AppendVerdict(7, Verdict{Code: Repeat, SetMark: true, Mark: 0x80001234}) }},
		{"accept with mark", func() error { return q.SetVerdictWithOption(8, nfqueue.NfAccept, nfqueue.WithMark(0x10)) },
			func(e *Encoder) { e.AppendVerdict(8, Verdict{Code: Accept, SetMark: true, Mark: 0x10}) }},
		{"batch", func() error { return q.SetVerdictBatch(64, nfqueue.NfAccept) }, func(e *Encoder) { e.AppendBatch(64, Accept) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent = sent[:0]
			if err := tt.send(); err != nil {
				t.Fatal(err)
			}
			if len(sent) != 1 {
				t.Fatalf("go-nfqueue sent %d messages", len(sent))
			}
			m := sent[0]
			m.Header.Sequence, m.Header.PID = 0, 0
			want, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			e := NewEncoder(9, unix.AF_UNSPEC, 1)
			tt.build(e)
			got := bytes.Clone(e.Bytes())
			binary.NativeEndian.PutUint32(got[8:12], 0) // sequence
			if !bytes.Equal(got, want) {
				t.Errorf("encoded\n%x\ngo-nfqueue\n%x", got, want)
			}
		})
	}
}

func TestParseZeroAllocs(t *testing.T) {
	b := datagram(
		kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(1, unix.ETH_P_IP, 1)}, kattr{attrMark, be32(1)}, kattr{attrPayload, make([]byte, 61)}),
		kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(2, unix.ETH_P_IP, 1)}, kattr{attrPayload, make([]byte, 64)}),
	)
	pkts := make([]Packet, 0, 8)
	vs := []Verdict{{Code: Accept}, {Code: Repeat, SetMark: true, Mark: 3}}
	e := NewEncoder(0, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		pkts, _, _ = Parse(b, pkts[:0])
		e.Reset()
		e.AppendVerdicts(pkts, vs)
	})
	if allocs != 0 {
		t.Errorf("Parse+AppendVerdicts allocate %.1f times per read, want 0", allocs)
	}
}

func BenchmarkParseEncode(b *testing.B) {
	// 64 queued 64-byte packets, as one recvmmsg read delivers them (one
	// message per datagram), answered with runs of accepts and a few marks.
	var dgrams [][]byte
	for i := range 64 {
		dgrams = append(dgrams, kmsg(typePacket, 0,
			kattr{attrPacketHdr, pktHdr(uint32(i+1), unix.ETH_P_IP, unix.NF_INET_LOCAL_IN)},
			kattr{attrInDev, be32(2)},
			kattr{attrPayload, make([]byte, 64)}))
	}
	vs := make([]Verdict, 64)
	for i := range vs {
		vs[i] = Verdict{Code: Accept}
		if i%16 == 15 {
			vs[i] = Verdict{Code: Repeat, SetMark: true, Mark: 0x100}
		}
	}
	pkts := make([]Packet, 0, 64)
	e := NewEncoder(0, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		pkts = pkts[:0]
		for _, d := range dgrams {
			pkts, _, _ = Parse(d, pkts)
		}
		e.Reset()
		e.AppendVerdicts(pkts, vs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}

func TestScanAck(t *testing.T) {
	pkt := kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(9, unix.ETH_P_IP, 1)}, kattr{attrPayload, []byte{1, 2, 3}})
	tests := []struct {
		name    string
		in      []byte
		acked   bool
		err     error
		packets int
	}{
		{"ack", errMsg(0, 4), true, nil, 0},
		{"ack for another request", errMsg(0, 3), false, nil, 0},
		{"refused", errMsg(-int32(syscall.EBUSY), 4), true, syscall.EBUSY, 0},
		{"packet before the ack", datagram(pkt, errMsg(0, 4)), true, nil, 1},
		{"packet after the ack", datagram(errMsg(0, 4), pkt), true, nil, 1},
		{"packet only", pkt, false, nil, 1},
		{"garbage", []byte{1, 2, 3}, false, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkts, ai, _ := scanAck(tt.in, 4)
			if ai.acked != tt.acked || !errors.Is(ai.err, tt.err) || (tt.err == nil) != (ai.err == nil) {
				t.Errorf("scanAck = %+v, want acked %v err %v", ai, tt.acked, tt.err)
			}
			if len(pkts) != tt.packets {
				t.Errorf("%d packets, want %d", len(pkts), tt.packets)
			}
			for _, p := range pkts {
				if p.Payload != nil {
					t.Error("payload kept: it points into a buffer the next read reuses")
				}
			}
		})
	}
}
