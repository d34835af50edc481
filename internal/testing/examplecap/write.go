package examplecap

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/fwagent/fwagent/internal/capture"
)

// Link is the link-layer framing a capture file is written with.
type Link uint8

const (
	// LinkRaw is classic pcap, LINKTYPE_RAW, through capture.Writer.
	LinkRaw Link = iota
	// LinkEthernetNg is pcapng with Ethernet frames; packets whose
	// frame.vlan is set carry an 802.1Q tag, and an ARP request is written
	// before the first packet (it is not IP: the reader skips it, but it
	// counts in frame numbers).
	LinkEthernetNg
	// LinkSLL is classic pcap with Linux cooked (SLL) headers, what
	// `tcpdump -i any` writes.
	LinkSLL
)

// Ethernet and SLL constants (IEEE 802.3, linux/if_packet.h).
const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeARP   = 0x0806
	etherTypeVLAN  = 0x8100
	sllOutgoing    = 4
	sllHost        = 0
	arpRequestSize = 28
)

var (
	macHost   = []byte{0x02, 0, 0, 0, 0, 0x01}
	macRouter = []byte{0x02, 0, 0, 0, 0, 0xfe}
	macBcast  = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func etherType(ip []byte) uint16 {
	if len(ip) > 0 && ip[0]>>4 == 6 {
		return etherTypeIPv6
	}
	return etherTypeIPv4
}

// encode writes frames in the given link framing. vlan tags every IP frame
// of an Ethernet capture with that VLAN id (0: untagged).
func encode(link Link, vlan uint16, frames []frame) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch link {
	case LinkRaw:
		err = encodeRaw(&buf, frames)
	case LinkSLL:
		err = encodeSLL(&buf, frames)
	case LinkEthernetNg:
		err = encodeEthernetNg(&buf, vlan, frames)
	default:
		err = fmt.Errorf("examplecap: unknown link %d", link)
	}
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func encodeRaw(buf *bytes.Buffer, frames []frame) error {
	w, err := capture.NewWriter(buf)
	if err != nil {
		return err
	}
	for _, f := range frames {
		if err := w.Write(epoch.Add(f.at), f.data); err != nil {
			return err
		}
	}
	return nil
}

func encodeSLL(buf *bytes.Buffer, frames []frame) error {
	w := pcapgo.NewWriterNanos(buf)
	if err := w.WriteFileHeader(capture.MaxFrame, layers.LinkTypeLinuxSLL); err != nil {
		return fmt.Errorf("examplecap: sll header: %w", err)
	}
	for i, f := range frames {
		// Alternate the packet type so both directions appear, as a
		// capture on "any" shows them.
		h := make([]byte, 16)
		pt := uint16(sllOutgoing)
		if i%2 == 1 {
			pt = sllHost
		}
		binary.BigEndian.PutUint16(h[0:], pt)
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		copy(h[6:], macHost)
		binary.BigEndian.PutUint16(h[14:], etherType(f.data))
		data := append(h, f.data...)
		ci := gopacket.CaptureInfo{Timestamp: epoch.Add(f.at), CaptureLength: len(data), Length: len(data)}
		if err := w.WritePacket(ci, data); err != nil {
			return fmt.Errorf("examplecap: sll packet: %w", err)
		}
	}
	return nil
}

func encodeEthernetNg(buf *bytes.Buffer, vlan uint16, frames []frame) error {
	// Fixed section and interface options: the defaults name the
	// generating machine's OS and architecture.
	intf := pcapgo.NgInterface{Name: "lan0", LinkType: layers.LinkTypeEthernet, TimestampResolution: 9}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "fwagent examplecap"}}
	w, err := pcapgo.NewNgWriterInterface(buf, intf, opts)
	if err != nil {
		return fmt.Errorf("examplecap: pcapng header: %w", err)
	}
	write := func(f frame, data []byte) error {
		ci := gopacket.CaptureInfo{Timestamp: epoch.Add(f.at), CaptureLength: len(data), Length: len(data)}
		if err := w.WritePacket(ci, data); err != nil {
			return fmt.Errorf("examplecap: pcapng packet: %w", err)
		}
		return nil
	}
	if len(frames) > 0 {
		arp := binary.BigEndian.AppendUint16(append(append([]byte{}, macBcast...), macHost...), etherTypeARP)
		arp = append(arp, make([]byte, arpRequestSize)...)
		if err := write(frame{at: frames[0].at}, arp); err != nil {
			return err
		}
	}
	for i, f := range frames {
		dst, src := macRouter, macHost
		if i%2 == 1 {
			dst, src = macHost, macRouter
		}
		h := append(append([]byte{}, dst...), src...)
		if vlan != 0 {
			h = binary.BigEndian.AppendUint16(h, etherTypeVLAN)
			h = binary.BigEndian.AppendUint16(h, vlan)
		}
		h = binary.BigEndian.AppendUint16(h, etherType(f.data))
		if err := write(f, append(h, f.data...)); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("examplecap: pcapng flush: %w", err)
	}
	return nil
}
