package droplog

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/nlmsg"
)

// logAttr is one NFULA attribute for the message builder.
type logAttr struct {
	typ uint16
	val []byte
}

// logDatagram builds a datagram of NFULNL_MSG_PACKET messages as the kernel
// sends them (attributes padded to 4 bytes; the last message unpadded).
func logDatagram(msgs ...[]logAttr) []byte {
	var out []byte
	for i, attrs := range msgs {
		body := []byte{0, 0, 0, 100} // nfgenmsg: family, version, res_id (group 100)
		for _, a := range attrs {
			l := nlmsg.AttrHdrLen + len(a.val)
			body = binary.NativeEndian.AppendUint16(body, uint16(l))
			body = binary.NativeEndian.AppendUint16(body, a.typ)
			body = append(body, a.val...)
			for len(body)%4 != 0 {
				body = append(body, 0)
			}
		}
		hdr := make([]byte, nlmsg.HdrLen)
		binary.NativeEndian.PutUint32(hdr[0:4], uint32(nlmsg.HdrLen+len(body)))
		binary.NativeEndian.PutUint16(hdr[4:6], typeLogPkt)
		out = append(out, hdr...)
		out = append(out, body...)
		if i < len(msgs)-1 {
			for len(out)%4 != 0 {
				out = append(out, 0)
			}
		}
	}
	return out
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func TestParseLogDatagram(t *testing.T) {
	ts := make([]byte, 16)
	binary.BigEndian.PutUint64(ts[0:8], 1700000000)
	binary.BigEndian.PutUint64(ts[8:16], 123456)
	payload := []byte{0x45, 0, 0, 28, 1, 2, 3}
	d := logDatagram(
		[]logAttr{
			{nfulaPktHdr, []byte{0x08, 0x00, 1, 0}},
			{nfulaMark, be32(0x10002)},
			{nfulaTstamp, ts},
			{nfulaInDev, be32(7)},
			{nfulaPrefix, []byte("fwagent:drop\x00")},
			{nfulaPayload, payload},
			{nfulaSeq, be32(41)},
			{nfulaUID, be32(65534)},
			{nfulaGID, be32(100)},
		},
		[]logAttr{{nfulaPktHdr, []byte{0x86, 0xdd, 3, 0}}, {nfulaOutDev, be32(9)}, {nfulaSeq, be32(42)}},
	)
	var got []logMsg
	var m logMsg
	if _, err := parseLogDatagram(d, &m, func(m *logMsg) {
		c := *m
		c.Payload, c.Prefix = bytes.Clone(m.Payload), bytes.Clone(m.Prefix)
		got = append(got, c)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
	a, b := got[0], got[1]
	if a.HwProto != 0x0800 || a.Hook != 1 || a.Mark != 0x10002 || a.InDev != 7 || !a.HasIn || a.HasOut || a.Seq != 41 ||
		string(a.Prefix) != "fwagent:drop" || !bytes.Equal(a.Payload, payload) || !a.Time.Equal(time.Unix(1700000000, 123456000)) ||
		!a.HasUID || a.UID != 65534 || !a.HasGID || a.GID != 100 {
		t.Errorf("first message %+v", a)
	}
	if b.HwProto != 0x86dd || b.Hook != 3 || b.OutDev != 9 || b.HasMark || b.HasPayload || b.HasTime || b.Seq != 42 || b.HasUID || b.HasGID {
		t.Errorf("second message %+v", b)
	}
	// A message running past the datagram is malformed; the one before it
	// still arrives.
	n := 0
	if _, err := parseLogDatagram(d[:len(d)-3], &m, func(*logMsg) { n++ }); err == nil || n != 1 {
		t.Errorf("cut datagram: %d messages, err %v; want 1 and errLogMalformed", n, err)
	}
}

// TestBatchHandleAllocatesNothing: a flood of log messages through the
// batched path (parse, hand over, decode, queue) allocates nothing once the
// prefix is known.
func TestBatchHandleAllocatesNothing(t *testing.T) {
	r := newTestReader(t, Config{Buffer: 1 << 20}, NewJSONSink(&bytes.Buffer{}))
	b := &batchReader{r: r}
	b.each = b.handle
	a := udpMsg(t, 9000, 0, 1)
	d := logDatagram([]logAttr{
		{nfulaPktHdr, []byte{0x08, 0x00, 1, 0}},
		{nfulaMark, be32(*a.Mark)},
		{nfulaPrefix, []byte("fwagent:drop\x00")},
		{nfulaPayload, *a.Payload},
	})
	var m logMsg
	parseLogDatagram(d, &m, b.each)
	allocs := testing.AllocsPerRun(1000, func() { parseLogDatagram(d, &m, b.each) })
	if allocs != 0 {
		t.Errorf("%.1f allocations per message, want 0", allocs)
	}
	if s := r.Stats(); s.Received < 1000 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// FuzzParseLogDatagram: any bytes parse without a panic, every view stays
// inside the datagram, and a well-formed message survives hostile ones
// before it only when they are well-formed too.
func FuzzParseLogDatagram(f *testing.F) {
	f.Add(logDatagram([]logAttr{{nfulaPktHdr, []byte{8, 0, 1, 0}}, {nfulaPrefix, []byte("x\x00")}, {nfulaPayload, []byte{0x45}}}))
	f.Add(logDatagram([]logAttr{{nfulaTstamp, make([]byte, 16)}}, []logAttr{{nfulaSeq, be32(1)}}))
	f.Add([]byte{16, 0, 0, 0, 0, 4, 0, 0})
	f.Fuzz(func(t *testing.T, d []byte) {
		orig := bytes.Clone(d)
		var m logMsg
		inside := func(v []byte) bool {
			if len(v) == 0 {
				return true
			}
			start := uintptr(0)
			for i := range d {
				if &d[i] == &v[0] {
					start = uintptr(i) + 1
					break
				}
			}
			return start != 0 && int(start-1)+len(v) <= len(d)
		}
		parseLogDatagram(d, &m, func(m *logMsg) {
			if !inside(m.Payload) || !inside(m.Prefix) {
				t.Fatalf("a view points outside the datagram: payload %d bytes, prefix %d bytes", len(m.Payload), len(m.Prefix))
			}
			if bytes.IndexByte(m.Prefix, 0) >= 0 {
				t.Fatalf("prefix %q keeps its NUL", m.Prefix)
			}
		})
		if !bytes.Equal(d, orig) {
			t.Fatal("parsing modified the datagram")
		}
	})
}
