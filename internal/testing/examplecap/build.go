package examplecap

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
)

// epoch is the first packet's timestamp in every capture: fixed, so the
// files are the same on every run.
var epoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// frame is one IP packet of a capture and its offset from epoch.
type frame struct {
	at   time.Duration
	data []byte
}

// script collects the packets of one capture in order. The first error
// sticks and is returned by frames, so the builders read as a list of
// packets rather than a list of error checks.
type script struct {
	pkts []frame
	err  error
}

func (s *script) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// hello is clientHello(name); an error fails the script, as a bad packet
// does, and leaves the payload nil.
func (s *script) hello(name string) []byte {
	b, err := clientHello(name)
	if err != nil {
		s.fail(err)
	}
	return b
}

// add builds spec and appends it at offset at.
func (s *script) add(at time.Duration, spec packet.Spec) {
	if s.err != nil {
		return
	}
	b, err := packet.Build(spec)
	if err != nil {
		s.fail(fmt.Errorf("examplecap: packet %d: %w", len(s.pkts)+1, err))
		return
	}
	s.pkts = append(s.pkts, frame{at, b})
}

// raw appends bytes as they are, for packets Build refuses to make.
func (s *script) raw(at time.Duration, b []byte) {
	if s.err == nil {
		s.pkts = append(s.pkts, frame{at, b})
	}
}

func (s *script) frames() ([]frame, error) { return s.pkts, s.err }

// ap parses "addr:port" or "[v6]:port"; the generator's inputs are its own
// constants, so a bad one is a bug and panics.
func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// addr parses an address constant.
func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// tcpConn writes one TCP connection's packets with consistent sequence
// numbers, from the client's (originator's) and server's side.
type tcpConn struct {
	s           *script
	client, srv netip.AddrPort
	cseq, sseq  uint32
}

func (s *script) tcp(client, server string) *tcpConn {
	return &tcpConn{s: s, client: ap(client), srv: ap(server), cseq: 1000, sseq: 5000}
}

func (c *tcpConn) spec(fromClient bool, flags uint8, payload []byte) packet.Spec {
	src, dst, seq, peerSeq := c.client, c.srv, &c.cseq, c.sseq
	if !fromClient {
		src, dst, seq, peerSeq = c.srv, c.client, &c.sseq, c.cseq
	}
	sp := packet.Spec{
		Proto: packet.ProtoTCP, TCPFlags: flags, Payload: payload,
		Src: src.Addr(), Dst: dst.Addr(), SrcPort: src.Port(), DstPort: dst.Port(),
		Seq: *seq,
	}
	if flags&packet.TCPAck != 0 {
		sp.Ack = peerSeq
	}
	*seq += uint32(len(payload))
	if flags&(packet.TCPSyn|packet.TCPFin) != 0 {
		*seq++
	}
	return sp
}

// syn sends the client's SYN.
func (c *tcpConn) syn(at time.Duration) *tcpConn {
	c.s.add(at, c.spec(true, packet.TCPSyn, nil))
	return c
}

// synAck sends the server's SYN-ACK.
func (c *tcpConn) synAck(at time.Duration) *tcpConn {
	c.s.add(at, c.spec(false, packet.TCPSyn|packet.TCPAck, nil))
	return c
}

// ack sends the client's bare ACK (the handshake's third packet).
func (c *tcpConn) ack(at time.Duration) *tcpConn {
	c.s.add(at, c.spec(true, packet.TCPAck, nil))
	return c
}

// handshake is SYN, SYN-ACK, ACK, a millisecond apart from at.
func (c *tcpConn) handshake(at time.Duration) *tcpConn {
	return c.syn(at).synAck(at + time.Millisecond).ack(at + 2*time.Millisecond)
}

// send is a PSH-ACK data segment from the client.
func (c *tcpConn) send(at time.Duration, payload []byte) *tcpConn {
	c.s.add(at, c.spec(true, packet.TCPPsh|packet.TCPAck, payload))
	return c
}

// reply is a PSH-ACK data segment from the server.
func (c *tcpConn) reply(at time.Duration, payload []byte) *tcpConn {
	c.s.add(at, c.spec(false, packet.TCPPsh|packet.TCPAck, payload))
	return c
}

// udp appends one datagram.
func (s *script) udp(at time.Duration, from, to string, payload []byte) {
	f, t := ap(from), ap(to)
	s.add(at, packet.Spec{Proto: packet.ProtoUDP, Src: f.Addr(), Dst: t.Addr(),
		SrcPort: f.Port(), DstPort: t.Port(), Payload: payload})
}

// ICMP types used below.
const (
	icmpEchoRequest   = 8
	icmp6EchoRequest  = 128
	icmpUnreachable   = 3
	icmpPortUnreach   = 3
	dnsTypeA          = 1
	dnsClassIN        = 1
	tcpDNSLengthBytes = 2
)

// echo appends an ICMP (IPv4) or ICMPv6 echo request.
func (s *script) echo(at time.Duration, from, to string, id, seq uint16) {
	sp := packet.Spec{Src: addr(from), Dst: addr(to), ICMPID: id, ICMPSeq: seq, Payload: []byte("ping")}
	if sp.Src.Is4() {
		sp.Proto, sp.ICMPType = packet.ProtoICMP, icmpEchoRequest
	} else {
		sp.Proto, sp.ICMPType = packet.ProtoICMPv6, icmp6EchoRequest
	}
	s.add(at, sp)
}

// last is the last packet appended, to quote in an ICMP error.
func (s *script) last() []byte {
	if len(s.pkts) == 0 {
		return nil
	}
	return s.pkts[len(s.pkts)-1].data
}

// icmpError appends an ICMP error from router quoting the packet quoted,
// sent to that packet's source (the host that sent it).
func (s *script) icmpError(at time.Duration, router string, typ, code uint8, quoted []byte) {
	if s.err != nil {
		return
	}
	var p packet.Packet
	if err := packet.NewDecoder().Decode(quoted, &p); err != nil {
		s.fail(fmt.Errorf("examplecap: decode quoted packet: %w", err))
		return
	}
	b, err := packet.BuildICMPError(typ, code, quoted, addr(router), p.Src)
	if err != nil {
		s.fail(fmt.Errorf("examplecap: %w", err))
		return
	}
	s.pkts = append(s.pkts, frame{at, b})
}

// dnsQuery is a DNS query message (id, RD, one question of type A).
func dnsQuery(id uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, dnsTypeA)
	return binary.BigEndian.AppendUint16(b, dnsClassIN)
}

// dnsTCP frames a DNS message for TCP (RFC 1035 4.2.2: a two-byte length).
func dnsTCP(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(make([]byte, 0, tcpDNSLengthBytes+len(msg)), uint16(len(msg))), msg...)
}

// clientHello returns the first TLS record crypto/tls sends when dialing
// serverName: a real ClientHello, read off a net.Pipe. The curve is pinned
// to X25519 to keep it one small segment. Its random fields come from
// crypto/rand, so it is reproducible only where that is made deterministic
// (testing/cryptotest.SetGlobalRandom, as the generator's test does).
func clientHello(serverName string) ([]byte, error) {
	client, server := net.Pipe()
	defer server.Close()
	cfg := &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // never gets that far: the pipe closes after the hello
		MinVersion:         tls.VersionTLS12,
		CurvePreferences:   []tls.CurveID{tls.X25519},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := tls.Client(client, cfg)
		_ = c.Handshake() // fails once the server side closes; only the hello matters
		c.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		return nil, fmt.Errorf("examplecap: read ClientHello header: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:5]))
	if _, err := io.ReadFull(server, body); err != nil {
		return nil, fmt.Errorf("examplecap: read ClientHello: %w", err)
	}
	server.Close()
	<-done
	return append(hdr, body...), nil
}
