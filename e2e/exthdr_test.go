package e2e

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/checksum"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// tcpSYN6 is a TCP SYN from src:sport to dst:dport with a valid checksum.
func tcpSYN6(src, dst netip.Addr, sport, dport uint16) []byte {
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint32(seg[4:], rand.Uint32())
	seg[12] = 5 << 4
	seg[13] = 0x02
	binary.BigEndian.PutUint16(seg[14:], 65535)
	binary.BigEndian.PutUint16(seg[16:], checksum.Internet(checksum.Pseudo(src, dst, 6, len(seg)), seg))
	return seg
}

// ipv6Packet builds an IPv6 packet: the extension headers (each given with
// its own next-header byte patched in) and then TCP.
func ipv6Packet(src, dst netip.Addr, exts [][]byte, extTypes []byte, tcp []byte) []byte {
	var payload []byte
	for i, e := range exts {
		e = append([]byte(nil), e...)
		if i+1 < len(exts) {
			e[0] = extTypes[i+1]
		} else {
			e[0] = 6
		}
		payload = append(payload, e...)
	}
	payload = append(payload, tcp...)
	first := byte(6)
	if len(exts) > 0 {
		first = extTypes[0]
	}
	h := make([]byte, 40)
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = first
	h[7] = 64
	s16, d16 := src.As16(), dst.As16()
	copy(h[8:], s16[:])
	copy(h[24:], d16[:])
	return append(h, payload...)
}

// TestIPv6ExtensionHeaders sends TCP SYNs behind IPv6 extension headers: the
// agent must find the TCP header behind them, so the accepted port answers
// with a SYN-ACK and the dropped one does not, with its rule in the event.
func TestIPv6ExtensionHeaders(t *testing.T) {
	n := agentNet(t, 8080, 23)
	a := startAgent(t, n.Server, writePolicy(t, flagsPolicy))
	src, dst := n.Client.Addr6(), n.Server.Addr6()

	padN := []byte{0, 0, 1, 4, 0, 0, 0, 0}       // next header, length 0 (8 bytes), PadN option of 4
	atomicFrag := []byte{0, 0, 0, 0, 0, 0, 0, 0} // offset 0, M=0: RFC 6946 atomic fragment
	for _, tc := range []struct {
		name  string
		exts  [][]byte
		types []byte
	}{
		{"none", nil, nil},
		{"hop-by-hop", [][]byte{padN}, []byte{0}},
		{"destination options", [][]byte{padN}, []byte{60}},
		{"hop-by-hop and destination options", [][]byte{padN, padN}, []byte{0, 60}},
		{"atomic fragment", [][]byte{atomicFrag}, []byte{44}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, port := range []uint16{8080, 23} {
				sport := uint16(10000 + rand.IntN(20000))
				synAck, err := rawSYN6(n.Client, src, dst, sport, port, tc.exts, tc.types)
				if err != nil {
					t.Fatalf("raw IPv6: %v", err)
				}
				switch {
				case port == 8080 && !synAck:
					t.Errorf("no SYN-ACK from the accepted port 8080 behind %s; events: %v", tc.name, a.events(t))
				case port == 23 && synAck:
					t.Errorf("SYN-ACK from the dropped port 23 behind %s", tc.name)
				case port == 23:
					evs := a.waitEvents(t, 1, func(e event) bool { return e.str("sport") == fmt.Sprint(sport) })
					if len(evs) == 0 {
						t.Errorf("no event for the dropped SYN behind %s; events: %v", tc.name, a.events(t))
					}
					for _, e := range evs {
						checkEvent(t, e, map[string]string{"rule": "telnet", "dport": "23", "family": "ipv6"})
					}
				}
			}
		})
	}
	if !a.alive() {
		t.Fatalf("agent died: %v", a.waitErr)
	}
}

// rawSYN6 sends one SYN from ns behind the given extension headers and
// reports whether a SYN-ACK came back.
func rawSYN6(ns *testnet.NS, src, dst netip.Addr, sport, dport uint16, exts [][]byte, types []byte) (bool, error) {
	var synAck bool
	err := ns.Do(func() error {
		// An IPPROTO_RAW socket sends the IPv6 header as given.
		out, err := net.ListenPacket("ip6:255", "::")
		if err != nil {
			return err
		}
		defer out.Close()
		in, err := net.ListenPacket("ip6:tcp", src.String())
		if err != nil {
			return err
		}
		defer in.Close()
		if _, err := out.WriteTo(ipv6Packet(src, dst, exts, types, tcpSYN6(src, dst, sport, dport)), &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		_ = in.SetReadDeadline(time.Now().Add(dropWait))
		buf := make([]byte, 1500)
		for {
			k, from, err := in.ReadFrom(buf)
			if err != nil {
				return nil // timeout: no SYN-ACK
			}
			if from.String() != dst.String() || k < 20 {
				continue
			}
			if binary.BigEndian.Uint16(buf[0:]) == dport && binary.BigEndian.Uint16(buf[2:]) == sport && buf[13]&0x12 == 0x12 {
				synAck = true
				return nil
			}
		}
	})
	return synAck, err
}
