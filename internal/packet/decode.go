package packet

import (
	"errors"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Errors returned by Decode. They are created once and returned unwrapped, so
// rejecting a hostile packet allocates nothing; compare with errors.Is.
var (
	// ErrTruncated: the buffer ends before a header, or before the length a
	// header claims (IPv4 total length, IPv6 payload length, UDP length).
	ErrTruncated = errors.New("packet: truncated")
	// ErrVersion: the first nibble is neither 4 nor 6.
	ErrVersion = errors.New("packet: not an IPv4 or IPv6 packet")
	// ErrHeader: a length field smaller than its own header (IPv4 IHL < 5,
	// total length < IHL, TCP data offset < 5, UDP length < 8).
	ErrHeader = errors.New("packet: malformed header")
	// ErrOptions: an IPv4 or TCP option whose length is below 2 or runs past
	// the header; the kernel rejects the former, and neither can be parsed.
	ErrOptions = errors.New("packet: malformed options")
	// ErrExtHeaders: an IPv6 extension header chain that repeats a header
	// (RFC 8200 4.1 allows each once, destination options twice) or puts
	// hop-by-hop anywhere but first. Bounding repeats bounds the walk.
	ErrExtHeaders = errors.New("packet: malformed IPv6 extension header chain")
)

// Decoder decodes packets into a Packet. It holds one gopacket
// DecodingLayerParser and the layers it decodes into, reused for every
// packet; use one Decoder per worker goroutine.
type Decoder struct {
	net   netLayer
	tcp   layers.TCP
	udp   layers.UDP
	sctp  layers.SCTP
	icmp4 layers.ICMPv4
	icmp6 layers.ICMPv6
	echo6 layers.ICMPv6Echo

	// parser4 and parser6 share one layer container; they differ only in the
	// first layer type, which a DecodingLayerParser fixes at construction.
	parser4 *gopacket.DecodingLayerParser
	parser6 *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

// maxTCPOptions is the most options 40 bytes of TCP option space can hold
// (all NOPs); preallocating them keeps gopacket's option parsing from growing
// its slice on the hot path.
const maxTCPOptions = 40

// NewDecoder returns a Decoder ready for use.
func NewDecoder() *Decoder {
	d := &Decoder{decoded: make([]gopacket.LayerType, 0, 4)}
	d.net.class = gopacket.NewLayerClass([]gopacket.LayerType{layers.LayerTypeIPv4, layers.LayerTypeIPv6})
	d.tcp.Options = make([]layers.TCPOption, 0, maxTCPOptions)

	// A sparse container indexes layers by type: the fastest lookup gopacket
	// offers, and all the types used here are small numbers.
	var dlc gopacket.DecodingLayerContainer = gopacket.DecodingLayerSparse(nil)
	for _, l := range []gopacket.DecodingLayer{&d.net, &d.tcp, &d.udp, &d.sctp, &d.icmp4, &d.icmp6, &d.echo6} {
		dlc = dlc.Put(l)
	}
	newParser := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first)
		p.SetDecodingLayerContainer(dlc)
		// Layers after the transport header (DNS, NDP, ...) are not ours
		// to decode; stopping there is success.
		p.IgnoreUnsupported = true
		return p
	}
	d.parser4 = newParser(layers.LayerTypeIPv4)
	d.parser6 = newParser(layers.LayerTypeIPv6)
	return d
}

// Decode decodes data, which starts at the IP header, into p. Every field of p
// is reset first; p.Payload aliases data. Trailing bytes beyond the IP length
// (link-layer padding) are ignored. On error p holds whatever was decoded
// before the fault and must not be used for a verdict.
func (d *Decoder) Decode(data []byte, p *Packet) error {
	return d.decode(data, p, false)
}

// DecodeHeaders is Decode for a copy of a packet that may have been cut after
// its headers: a capture with a snap length, or an NFLOG or NFQUEUE copy
// range. IP and UDP lengths that run past the buffer are accepted; Length
// still reports what the IP header claims, and Payload holds what was
// copied. The headers themselves (IP options, extension headers, the
// transport header) must be whole, or the result is ErrTruncated as with
// Decode.
func (d *Decoder) DecodeHeaders(data []byte, p *Packet) error {
	return d.decode(data, p, true)
}

func (d *Decoder) decode(data []byte, p *Packet, cut bool) error {
	*p = Packet{}
	if len(data) == 0 {
		return ErrTruncated
	}
	var parser *gopacket.DecodingLayerParser
	switch data[0] >> 4 {
	case 4:
		parser = d.parser4
	case 6:
		parser = d.parser6
	default:
		return ErrVersion
	}
	d.net.cut = cut
	err := parser.DecodeLayers(data, &d.decoded)
	*p = d.net.p
	if err != nil {
		// netLayer validated every header gopacket's layers are about to
		// read, so only its own sentinel errors arrive here.
		return err
	}
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeTCP:
			p.HasL4 = true
			p.SrcPort = uint16(d.tcp.SrcPort)
			p.DstPort = uint16(d.tcp.DstPort)
			p.TCPFlags = d.tcp.Contents[13] // the flag byte as on the wire, CWR..FIN
			p.TCPSeq = d.tcp.Seq
			p.TCPAck = d.tcp.Ack
			p.TCPWindow = d.tcp.Window
			p.Payload = d.tcp.Payload
		case layers.LayerTypeUDP:
			p.HasL4 = true
			p.SrcPort = uint16(d.udp.SrcPort)
			p.DstPort = uint16(d.udp.DstPort)
			p.Payload = d.udp.Payload
		case layers.LayerTypeSCTP:
			p.HasL4 = true
			p.SrcPort = uint16(d.sctp.SrcPort)
			p.DstPort = uint16(d.sctp.DstPort)
			p.Payload = d.sctp.Payload
		case layers.LayerTypeICMPv4:
			p.HasL4 = true
			p.ICMPType = d.icmp4.TypeCode.Type()
			p.ICMPCode = d.icmp4.TypeCode.Code()
			p.Payload = d.icmp4.Payload
			switch p.ICMPType {
			case icmp4EchoReply, icmp4EchoRequest:
				p.ICMPID = d.icmp4.Id
				p.ICMPSeq = d.icmp4.Seq
			case icmp4DestUnreachable, icmp4SourceQuench, icmp4Redirect, icmp4TimeExceeded, icmp4ParamProblem:
				parseQuoted(p.Payload, IPv4, &p.Inner)
			}
		case layers.LayerTypeICMPv6:
			p.HasL4 = true
			p.ICMPType = d.icmp6.TypeCode.Type()
			p.ICMPCode = d.icmp6.TypeCode.Code()
			// gopacket's ICMPv6 layer stops after 4 bytes; every ICMPv6
			// message has 4 more (netLayer checked), which Packet counts
			// as header.
			p.Payload = d.icmp6.Payload[4:]
			switch p.ICMPType {
			case icmp6DestUnreachable, icmp6PacketTooBig, icmp6TimeExceeded, icmp6ParamProblem:
				parseQuoted(p.Payload, IPv6, &p.Inner)
			}
		case layers.LayerTypeICMPv6Echo:
			p.ICMPID = d.echo6.Identifier
			p.ICMPSeq = d.echo6.SeqNumber
		}
	}
	return nil
}

// ICMP types the decoder treats specially.
const (
	icmp4EchoReply       = 0
	icmp4DestUnreachable = 3
	icmp4SourceQuench    = 4
	icmp4Redirect        = 5
	icmp4EchoRequest     = 8
	icmp4TimeExceeded    = 11
	icmp4ParamProblem    = 12

	icmp6DestUnreachable = 1
	icmp6PacketTooBig    = 2
	icmp6TimeExceeded    = 3
	icmp6ParamProblem    = 4
	icmp6EchoRequest     = 128
	icmp6EchoReply       = 129
)
