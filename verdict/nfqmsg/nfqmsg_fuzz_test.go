package nfqmsg

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FuzzParsePackets feeds arbitrary datagrams to Parse: it must not panic,
// every payload must lie inside the datagram, and a truncated packet must
// carry no payload. The answers built from whatever it parsed must decode
// back to one message per packet or run.
func FuzzParsePackets(f *testing.F) {
	f.Add(kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(1, unix.ETH_P_IP, 1)}, kattr{attrMark, be32(5)}, kattr{attrPayload, []byte{0x45, 0, 0, 1, 2}}))
	f.Add(datagram(
		kmsg(typePacket, 1, kattr{attrPacketHdr, pktHdr(2, unix.ETH_P_IPV6, 3)}, kattr{attrPayload, []byte{1}}),
		errMsg(-2, 4),
		kmsg(typePacket, 1, kattr{attrPacketHdr, pktHdr(3, unix.ETH_P_IPV6, 3)}, kattr{attrInDev, be32(2)}, kattr{attrPayload, []byte{1, 2, 3}}),
	))
	f.Add(kmsg(typePacket, 0, kattr{attrPacketHdr, pktHdr(4, unix.ETH_P_IP, 3)}, kattr{attrUID, be32(0)}, kattr{attrGID, []byte{1, 2}}, kattr{attrPayload, []byte{0x45}}))
	f.Add([]byte{})
	f.Add([]byte{16, 0, 0, 0, 0, 3, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pkts, _, _ := Parse(b, nil)
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		hi := lo + uintptr(len(b))
		vs := make([]Verdict, len(pkts))
		for i, p := range pkts {
			if p.Truncated && p.Payload != nil {
				t.Fatalf("packet %d truncated with a payload", i)
			}
			if len(p.Payload) > 0 {
				s := uintptr(unsafe.Pointer(unsafe.SliceData(p.Payload)))
				if s < lo || s+uintptr(cap(p.Payload)) > hi {
					t.Fatalf("packet %d payload outside the datagram", i)
				}
			}
			vs[i] = Verdict{Code: Accept, SetMark: i%3 == 0, Mark: p.ID}
		}
		e := NewEncoder(0, 0, 0)
		e.AppendVerdicts(pkts, vs)
		if len(pkts) > 0 && (e.Messages() == 0 || e.Messages() > len(pkts)) {
			t.Fatalf("%d messages for %d packets", e.Messages(), len(pkts))
		}
		if got := len(decodeVerdicts(t, e.Bytes())); got != e.Messages() {
			t.Fatalf("decoded %d messages, encoder counted %d", got, e.Messages())
		}
		// The bind's ack scanner reads the same datagrams; it must find the
		// same packets, with their payloads dropped.
		early, _, _ := scanAck(b, 4)
		if len(early) != len(pkts) {
			t.Fatalf("scanAck found %d packets, Parse %d", len(early), len(pkts))
		}
		for i := range early {
			if early[i].ID != pkts[i].ID || early[i].Payload != nil {
				t.Fatalf("scanAck packet %d = %+v, Parse %+v", i, early[i], pkts[i])
			}
		}
	})
}
