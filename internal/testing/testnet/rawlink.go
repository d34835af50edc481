package testnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// RawLink sends hand-built Ethernet frames out of one interface of a
// namespace through an AF_PACKET socket, so no kernel code on the sending
// side repairs a header a test got wrong on purpose.
type RawLink struct {
	fd       int
	ifindex  int
	src, dst net.HardwareAddr
}

// OpenRawLink opens a packet socket on ifname in ns, addressed to the MAC
// of peer's interface peerIf; it closes when the test ends.
func (ns *NS) OpenRawLink(tb testing.TB, ifname string, peer *NS, peerIf string) *RawLink {
	tb.Helper()
	l, err := ns.Netlink().LinkByName(ifname)
	if err != nil {
		tb.Fatalf("find %s in %s: %v", ifname, ns.Name(), err)
	}
	pl, err := peer.Netlink().LinkByName(peerIf)
	if err != nil {
		tb.Fatalf("find %s in %s: %v", peerIf, peer.Name(), err)
	}
	r := &RawLink{ifindex: l.Attrs().Index, src: l.Attrs().HardwareAddr, dst: pl.Attrs().HardwareAddr}
	if err := ns.Do(func() (err error) {
		// Protocol 0: send only, receive nothing.
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		tb.Fatalf("packet socket in %s: %v", ns.Name(), err)
	}
	tb.Cleanup(func() { unix.Close(r.fd) })
	return r
}

// Send puts payload (starting at the IP header) on the wire behind an
// Ethernet header of the given type.
func (r *RawLink) Send(etherType uint16, payload []byte) error {
	frame := make([]byte, 14+len(payload))
	copy(frame[0:6], r.dst)
	copy(frame[6:12], r.src)
	binary.BigEndian.PutUint16(frame[12:14], etherType)
	copy(frame[14:], payload)
	// The link-layer protocol is in network byte order.
	sa := &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6, Protocol: etherType<<8 | etherType>>8}
	copy(sa.Addr[:], r.dst)
	if err := unix.Sendto(r.fd, frame, 0, sa); err != nil {
		return fmt.Errorf("send %d-byte frame: %w", len(frame), err)
	}
	return nil
}
