package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/ipv4"
)

// TestMalformedPackets sends packets the kernel passes up to the input hook
// although their transport headers are broken; the agent must survive them
// and keep deciding.
func TestMalformedPackets(t *testing.T) {
	n := agentNet(t, 8080)
	a := startAgent(t, n.Server, writePolicy(t, flagsPolicy))
	src, dst := n.Client.Addr4(), n.Server.Addr4()

	tcp := func(doff byte, flags byte, payload []byte) []byte {
		b := make([]byte, 20, 20+len(payload))
		binary.BigEndian.PutUint16(b[0:], 40000)
		binary.BigEndian.PutUint16(b[2:], 8080)
		b[12] = doff << 4
		b[13] = flags
		binary.BigEndian.PutUint16(b[14:], 65535)
		return append(b, payload...)
	}
	for _, tc := range []struct {
		name    string
		proto   int
		options []byte
		body    []byte
	}{
		{"tcp data offset 0", 6, nil, tcp(0, 0x02, nil)},
		{"tcp data offset 4", 6, nil, tcp(4, 0x02, nil)},
		{"tcp data offset past the end", 6, nil, tcp(15, 0x02, []byte("xx"))},
		{"tcp header cut short", 6, nil, tcp(5, 0x02, nil)[:9]},
		{"tcp all flags", 6, nil, tcp(5, 0xff, []byte("x"))},
		{"udp header cut short", 17, nil, []byte{0x9c, 0x40, 0x1f}},
		{"udp length beyond packet", 17, nil, []byte{0x9c, 0x40, 0x1f, 0x90, 0xff, 0xff, 0, 0, 'x'}},
		{"udp length below header", 17, nil, []byte{0x9c, 0x40, 0x1f, 0x90, 0, 3, 0, 0, 'x'}},
		{"icmp one byte", 1, nil, []byte{8}},
		{"ip options", 6, []byte{1, 1, 1, 0}, tcp(5, 0x02, nil)},
		{"unknown protocol", 253, nil, []byte("experimental")},
		{"empty gre", 47, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := n.Client.Do(func() error {
				pc, err := net.ListenPacket("ip4:"+itoaProto(tc.proto), src.String())
				if err != nil {
					return err
				}
				defer pc.Close()
				rc, err := ipv4.NewRawConn(pc)
				if err != nil {
					return err
				}
				h := &ipv4.Header{
					Version: 4, Len: 20 + len(tc.options), TotalLen: 20 + len(tc.options) + len(tc.body),
					TTL: 64, Protocol: tc.proto, Src: src.AsSlice(), Dst: dst.AsSlice(), Options: tc.options,
				}
				return rc.WriteTo(h, tc.body, nil)
			})
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			if !a.alive() {
				t.Fatalf("agent died on %s: %v", tc.name, a.waitErr)
			}
		})
	}
	// Still deciding: the policy's accept and its drop both work.
	tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8080))
	if connects(n.Client, netip.AddrPortFrom(dst, 23), 0) {
		t.Error("port 23 reachable after the malformed packets, want it dropped")
	}
	if !a.alive() {
		t.Fatalf("agent died: %v", a.waitErr)
	}
}

func itoaProto(p int) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 47:
		return "gre"
	}
	return "253"
}
