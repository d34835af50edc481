package policytest

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/fwagent/fwagent/internal/l7/quic"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// Result is the outcome of one entry of a policy's tests:.
type Result struct {
	File string
	Line int
	Col  int
	OK   bool
	// Msg says what happened: the decision when OK, what was expected and
	// what came instead when not.
	Msg string
}

// String formats the result as FILE:LINE:COL: ok|FAIL: message.
func (r Result) String() string {
	status := "FAIL"
	if r.OK {
		status = "ok"
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", r.File, r.Line, r.Col, status, r.Msg)
}

// Run evaluates the policy's own tests, in order, each packet built
// directly from its description. Rate limits start from fresh buckets (the
// running Program's are untouched) shared by the tests of one run, so a
// sequence of tests can exercise a limit; all test packets arrive at the
// same instant. A test's expect is compared with the decision's Action, so
// tests keep their meaning under mode: audit.
func Run(p *policies.Program) []Result {
	fresh := p.WithFreshLimits()
	const now = int64(1_000_000_000)
	out := make([]Result, 0, len(p.Tests()))
	for _, t := range p.Tests() {
		pkt := build(&t.Packet)
		in := &policies.Input{
			Pkt:   pkt,
			Hook:  t.Packet.Hook,
			InIf:  t.Packet.Iif,
			OutIf: t.Packet.Oif,
			State: t.Packet.State,
			Now:   now,

			HasUID: t.Packet.HasUID,
			UID:    t.Packet.UID,
			HasGID: t.Packet.HasGID,
			GID:    t.Packet.GID,
		}
		if t.Packet.Cgroup != "" {
			in.Cgroups = FixedCgroup(t.Packet.Cgroup)
		}
		d := fresh.Decide(in)
		got := d.Action.String() + " by " + describeRule(fresh, d.Rule)
		res := Result{File: t.At.File, Line: t.At.Line, Col: t.At.Col, OK: true, Msg: got}
		switch {
		case d.Action != t.Expect:
			res.OK = false
			res.Msg = fmt.Sprintf("expected %s, got %s", t.Expect, got)
		case t.ByDefault && d.Rule != policies.NoRule:
			res.OK = false
			res.Msg = fmt.Sprintf("expected %s by default, got %s", t.Expect, got)
		case t.Rule != "" && fresh.RuleName(d.Rule) != t.Rule || t.Rule != "" && d.Rule == policies.NoRule:
			res.OK = false
			res.Msg = fmt.Sprintf("expected %s by rule %q, got %s", t.Expect, t.Rule, got)
		}
		out = append(out, res)
	}
	return out
}

// FixedCgroup is a CgroupFinder that finds the same cgroup for every
// packet: a policy test packet's.
type FixedCgroup string

// Cgroup is c, for every packet.
func (c FixedCgroup) Cgroup(*packet.Packet, nf.Hook) (string, bool) { return string(c), true }

func describeRule(p *policies.Program, i int32) string {
	if i == policies.NoRule {
		return "default"
	}
	return fmt.Sprintf("rule %q", p.RuleName(i))
}

// build makes the decoded packet a test describes, with a real DNS query or
// TLS ClientHello as payload when it names one, so the same parsers run as
// on the wire.
func build(tp *policies.TestPacket) *packet.Packet {
	pkt := &packet.Packet{
		Family: tp.Family,
		Src:    tp.Src,
		Dst:    tp.Dst,
		Proto:  tp.Proto,
		TTL:    64,
		HasL4:  true,
	}
	switch {
	case tp.DNSQName != "":
		pkt.Payload = DNSQuery(tp.DNSQName, tp.Proto == packet.ProtoTCP)
	case tp.TLSSNI != "" && tp.Proto == packet.ProtoUDP:
		pkt.Payload = QUICInitial(tp.TLSSNI)
	case tp.TLSSNI != "":
		pkt.Payload = ClientHello(tp.TLSSNI)
	case tp.HTTPHost != "":
		pkt.Payload = []byte("GET / HTTP/1.1\r\nHost: " + tp.HTTPHost + "\r\n\r\n")
	default:
		pkt.Payload = tp.Payload
	}
	l4 := 0
	switch tp.Proto {
	case packet.ProtoTCP:
		pkt.SrcPort, pkt.DstPort, pkt.TCPFlags, l4 = tp.Sport, tp.Dport, tp.TCPFlags, 20
	case packet.ProtoUDP:
		pkt.SrcPort, pkt.DstPort, l4 = tp.Sport, tp.Dport, 8
	case packet.ProtoSCTP:
		pkt.SrcPort, pkt.DstPort, l4 = tp.Sport, tp.Dport, 12
	case packet.ProtoICMP, packet.ProtoICMPv6:
		pkt.ICMPType, l4 = tp.ICMPType, 8
	default:
		pkt.HasL4 = false
	}
	ip := 20
	if tp.Family == packet.IPv6 {
		ip = 40
	}
	pkt.Length = ip + l4 + len(pkt.Payload)
	if tp.Length != 0 {
		pkt.Length = tp.Length
	}
	return pkt
}

// DNSQuery is a one-question DNS query for name, type A, class IN; over
// TCP with its two-byte length prefix.
func DNSQuery(name string, tcp bool) []byte {
	msg := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range strings.Split(name, ".") {
		msg = append(msg, byte(len(label)))
		msg = append(msg, label...)
	}
	msg = append(msg, 0, 0, 1, 0, 1)
	if tcp {
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
	}
	return msg
}

// QUICInitial is a QUIC version 1 client Initial packet, padded to a
// full-size datagram, carrying ClientHello's hello in one CRYPTO frame.
func QUICInitial(name string) []byte {
	hello := ClientHello(name)[5:] // QUIC carries the bare handshake message
	dcid := []byte{0x5e, 0x1f, 0x7e, 0x57, 0x00, 0x00, 0x00, 0x01}
	pkt, err := quic.SealInitial(nil, quic.Version1, dcid, nil, 0, quic.AppendCrypto(nil, 0, hello))
	if err != nil {
		// A test name is at most 253 bytes: the packet always fits.
		panic(fmt.Sprintf("policies: test QUIC Initial for %q: %v", name, err))
	}
	return pkt
}

// ClientHello is a minimal TLS 1.2-style ClientHello record carrying one
// server_name.
func ClientHello(name string) []byte {
	sni := []byte{0, 0} // extension type server_name
	sni = binary.BigEndian.AppendUint16(sni, uint16(2+1+2+len(name)))
	sni = binary.BigEndian.AppendUint16(sni, uint16(1+2+len(name)))
	sni = append(sni, 0) // host_name
	sni = binary.BigEndian.AppendUint16(sni, uint16(len(name)))
	sni = append(sni, name...)

	body := []byte{0x03, 0x03}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0, 2, 0x13, 0x01)    // cipher suites
	body = append(body, 1, 0)                // compression methods
	body = binary.BigEndian.AppendUint16(body, uint16(len(sni)))
	body = append(body, sni...)

	hs := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	rec := []byte{0x16, 0x03, 0x01}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(hs)))
	return append(rec, hs...)
}
