package examplecap

import (
	"bytes"
	"fmt"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
)

// Capture is one generated capture file.
type Capture struct {
	// File is the file name under policies/examples/testdata.
	File string
	// Link is the framing it is written with.
	Link Link
	// Data is the whole file.
	Data []byte
}

const ms = time.Millisecond

// design is one capture: its file name, framing and packets.
type design struct {
	file  string
	link  Link
	vlan  uint16
	build func(*script)
}

// designs lists every capture. The comment above each packet group says
// which rule of the example policy it is meant to hit; cmd/fwagent's tests
// hold the resulting counts.
var designs = []design{
	{"host-baseline.pcap", LinkRaw, 0, hostBaseline},
	{"log-only.pcapng", LinkEthernetNg, 10, logOnly},
	{"dns-blocklist.pcap", LinkSLL, 0, dnsBlocklist},
	{"tls-egress-allowlist.pcap", LinkRaw, 0, tlsEgress},
	{"ssh-bruteforce.pcap", LinkRaw, 0, sshBruteforce},
	{"router-lan.pcapng", LinkEthernetNg, 0, routerLAN},
	{"router-wan.pcap", LinkRaw, 0, routerWAN},
	{"every-key.pcap", LinkRaw, 0, everyKey},
}

// All builds every capture.
func All() ([]Capture, error) {
	out := make([]Capture, 0, len(designs))
	for _, d := range designs {
		var s script
		d.build(&s)
		frames, err := s.frames()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.file, err)
		}
		data, err := encode(d.link, d.vlan, frames)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.file, err)
		}
		out = append(out, Capture{File: d.file, Link: d.link, Data: data})
	}
	return out, nil
}

// hostBaseline: inbound traffic to host 192.0.2.10 (eval --hook input).
func hostBaseline(s *script) {
	// 1-5: SSH from an admin network: ssh-admins, then 4 established.
	s.tcp("10.1.2.3:40000", "192.0.2.10:22").handshake(0).
		send(10*ms, []byte("SSH-2.0-client\r\n")).reply(11*ms, []byte("SSH-2.0-server\r\n"))
	// 6-7: SSH from elsewhere, a SYN and its retransmission: default drop x2.
	c := s.tcp("203.0.113.9:40001", "192.0.2.10:22")
	c.syn(100 * ms)
	c.cseq-- // a retransmission repeats the sequence number
	c.syn(1100 * ms)
	// 8-12: HTTPS from anywhere: web, then 4 established.
	s.tcp("203.0.113.9:40002", "192.0.2.10:443").handshake(200*ms).
		send(210*ms, []byte("GET / HTTP/1.1\r\n\r\n")).reply(211*ms, []byte("HTTP/1.1 200 OK\r\n\r\n"))
	// 13: a router's port-unreachable about the host's last reply: related,
	// so the established rule (state: [established, related]) takes it.
	s.icmpError(220*ms, "198.51.100.254", icmpUnreachable, icmpPortUnreach, s.last())
	// 14-15: SSH from the admin IPv6 network: ssh-admins, established.
	s.tcp("[2001:db8:a::7]:40003", "[2001:db8:1::10]:22").syn(300 * ms).synAck(301 * ms)
	// 16-37: 22 pings in one instant: limit 10/s burst 20 lets 20 through
	// (ping), 2 fall through to the default drop.
	for i := range 22 {
		s.echo(400*ms, "198.51.100.1", "192.0.2.10", 7, uint16(i+1))
	}
	// 38: one more a second later: the bucket has refilled: ping.
	s.echo(1400*ms, "198.51.100.1", "192.0.2.10", 7, 23)
	// 39: SNMP: default drop.
	s.udp(1500*ms, "203.0.113.9:5000", "192.0.2.10:161", []byte("public"))
	// 40: an ACK for no known connection: invalid.
	s.tcp("203.0.113.50:40004", "192.0.2.10:80").ack(1600 * ms)
	// 41: an ICMP error quoting a packet of no tracked flow: invalid.
	quoted, _ := packet.Build(packet.Spec{Src: addr("192.0.2.10"), Dst: addr("203.0.113.77"),
		Proto: packet.ProtoTCP, SrcPort: 40005, DstPort: 443, TCPFlags: packet.TCPSyn})
	s.icmpError(1700*ms, "198.51.100.254", icmpUnreachable, icmpPortUnreach, quoted)
}

// logOnly: inbound traffic under mode: audit (eval --hook input). The
// Ethernet capture starts with an ARP frame, so these are frames 2-8.
func logOnly(s *script) {
	// 2-4: SSH: ssh, established x2.
	s.tcp("198.51.100.20:40000", "192.0.2.10:22").handshake(0)
	// 5: MySQL: default, would drop (accepted: audit).
	s.tcp("198.51.100.20:40001", "192.0.2.10:3306").syn(10 * ms)
	// 6: SNMP: default, would drop.
	s.udp(20*ms, "198.51.100.20:5000", "192.0.2.10:161", []byte("public"))
	// 7: ping: ping.
	s.echo(30*ms, "198.51.100.20", "192.0.2.10", 1, 1)
	// 8: HTTP on 8080: web.
	s.tcp("198.51.100.20:40002", "192.0.2.10:8080").syn(40 * ms)
}

// dnsBlocklist: the host's own DNS traffic (eval --hook output).
func dnsBlocklist(s *script) {
	// 1: blocked exactly: dns-blocked.
	s.udp(0, "10.0.0.5:33001", "9.9.9.9:53", dnsQuery(1, "ads.tracker.example"))
	// 2: blocked by wildcard: dns-blocked.
	s.udp(10*ms, "10.0.0.5:33002", "9.9.9.9:53", dnsQuery(2, "a.b.ads.tracker.example"))
	// 3-4: an allowed name and its answer: default accept x2.
	s.udp(20*ms, "10.0.0.5:33003", "9.9.9.9:53", dnsQuery(3, "www.example.org"))
	s.udp(30*ms, "9.9.9.9:53", "10.0.0.5:33003", dnsQuery(3, "www.example.org"))
	// 5: a blocked name on the same, now established, flow: dns-blocked
	// (the flow's earlier accept must not be reused).
	s.udp(40*ms, "10.0.0.5:33003", "9.9.9.9:53", dnsQuery(4, "telemetry.example.net"))
	// 6: blocked, on the second port of $dns: dns-blocked.
	s.udp(50*ms, "10.0.0.5:33004", "9.9.9.9:5353", dnsQuery(5, "x.doubleclick.example"))
	// 7: the parent of a blocked zone is not blocked: default accept.
	s.udp(60*ms, "10.0.0.5:33005", "9.9.9.9:53", dnsQuery(6, "tracker.example"))
	// 8-11: DNS over TCP: handshake default accept x3, blocked query.
	s.tcp("10.0.0.5:40000", "9.9.9.9:53").handshake(100*ms).
		send(110*ms, dnsTCP(dnsQuery(7, "telemetry.example.net")))
	// 12-15: DNS over TCP, allowed name: default accept x4.
	s.tcp("10.0.0.5:40001", "9.9.9.9:53").handshake(200*ms).
		send(210*ms, dnsTCP(dnsQuery(8, "www.example.org")))
	// 16: not DNS: default accept.
	s.udp(300*ms, "10.0.0.5:33006", "9.9.9.9:443", []byte("not dns at all"))
}

// tlsEgress: the host's HTTPS and DNS (eval --hook output). Replies are in
// the capture, so the flow tracker sees the flows established; evaluated on
// the output hook they meet the output default (drop): live, they arrive on
// input, where established-in takes them.
func tlsEgress(s *script) {
	// 1: DNS to a listed resolver: dns.
	s.udp(0, "10.0.0.5:33000", "10.0.0.53:53", dnsQuery(1, "deb.debian.org"))
	// 2-7: allowed name. SYN, ACK: https-handshake; SYN-ACK and the
	// server's data: default drop; ClientHello: https-allowed; the
	// client's next data segment reuses the flow's decision: https-allowed.
	s.tcp("10.0.0.5:40000", "151.101.2.132:443").handshake(10*ms).
		send(20*ms, s.hello("deb.debian.org")).
		reply(30*ms, bytes.Repeat([]byte{0x17}, 200)).
		send(40*ms, bytes.Repeat([]byte{0x17}, 150))
	// 8-11: a name not allowed: https-handshake x2, default drop, https-other.
	s.tcp("10.0.0.5:40001", "140.82.112.6:443").handshake(100*ms).
		send(110*ms, s.hello("evil.example"))
	// 12-15: allowed by wildcard: https-handshake x2, default drop,
	// https-allowed.
	s.tcp("10.0.0.5:40002", "185.199.108.133:443").handshake(200*ms).
		send(210*ms, s.hello("raw.githubusercontent.com"))
	// 16: plain HTTP: default drop.
	s.tcp("10.0.0.5:40003", "93.184.215.14:80").syn(300 * ms)
}

// sshBruteforce: SYNs to 192.0.2.10:22 over two minutes (eval --hook
// input). The limit is 3/m, burst 3, per source, over: true.
func sshBruteforce(s *script) {
	// 1-4: the first connection, completed: ssh, established x3.
	s.tcp("198.51.100.7:41000", "192.0.2.10:22").handshake(0).send(5*ms, []byte("SSH-2.0-x\r\n"))
	// 5-6: second and third attempts, at 1 s and 2 s: ssh x2 (burst 3).
	s.tcp("198.51.100.7:41001", "192.0.2.10:22").syn(1 * time.Second)
	s.tcp("198.51.100.7:41002", "192.0.2.10:22").syn(2 * time.Second)
	// 7-8: fourth and fifth at 3 s and 4 s, with 0.15 and 0.2 tokens
	// refilled: ssh-bruteforce x2.
	s.tcp("198.51.100.7:41003", "192.0.2.10:22").syn(3 * time.Second)
	s.tcp("198.51.100.7:41004", "192.0.2.10:22").syn(4 * time.Second)
	// 9: another source has its own bucket: ssh.
	s.tcp("198.51.100.8:41000", "192.0.2.10:22").syn(4 * time.Second)
	// 10-13: two minutes later the bucket is full again: ssh x3, then
	// ssh-bruteforce.
	for i := range 4 {
		s.tcp(fmt.Sprintf("198.51.100.7:%d", 42000+i), "192.0.2.10:22").syn(124*time.Second + time.Duration(i)*ms)
	}
}

// routerLAN: forwarded traffic from lan0 to wan0 (eval --hook forward
// --iif lan0 --oif wan0). Frame 1 is ARP, so these are frames 2-12.
func routerLAN(s *script) {
	// 2-6: HTTPS out: lan-out, established x4.
	s.tcp("192.168.1.20:40000", "93.184.215.14:443").handshake(0).
		send(10*ms, []byte("hello")).reply(11*ms, []byte("world"))
	// 7-8: SMB out, SYN and retransmission: lan-smb-out x2.
	c := s.tcp("192.168.1.20:40001", "93.184.215.14:445")
	c.syn(100 * ms)
	c.cseq--
	c.syn(1100 * ms)
	// 9-10: DNS over IPv6 from the LAN and its answer: lan-out, established.
	s.udp(1200*ms, "[fd00:1::20]:5000", "[2001:db8::1]:53", dnsQuery(1, "example.org"))
	s.udp(1210*ms, "[2001:db8::1]:53", "[fd00:1::20]:5000", dnsQuery(1, "example.org"))
	// 11: a source outside $lan: default drop.
	s.tcp("10.9.9.9:40002", "93.184.215.14:80").syn(1300 * ms)
	// 12: NetBIOS over UDP: lan-smb-out.
	s.udp(1400*ms, "192.168.1.20:137", "93.184.215.14:137", []byte("nbns"))
}

// routerWAN: forwarded traffic from wan0 to lan0 (eval --hook forward
// --iif wan0 --oif lan0).
func routerWAN(s *script) {
	// 1-3: to the published web server: published-web, established x2.
	s.tcp("93.184.215.14:50000", "192.168.1.10:443").handshake(0)
	// 4: to another LAN host: default drop.
	s.tcp("93.184.215.14:50001", "192.168.1.11:443").syn(100 * ms)
	// 5: a LAN source arriving from the outside: spoofed-lan.
	s.tcp("192.168.1.20:50002", "192.168.1.11:22").syn(200 * ms)
	// 6: ping through the router: default drop (router-ping is input only).
	s.echo(300*ms, "93.184.215.14", "192.168.1.10", 1, 1)
	// 7: IPv6 to the published web server: published-web.
	s.tcp("[2001:db8::99]:50003", "[fd00:1::10]:443").syn(400 * ms)
}

// everyKey: one capture for policies/examples/testdata/every-key.yaml,
// inbound to 192.0.2.10 (eval --hook input --iif eth0).
func everyKey(s *script) {
	const host, peer, stranger = "192.0.2.10", "198.51.100.5", "203.0.113.5"
	// 1: dns_qname over UDP: dns-block.
	s.udp(0, peer+":33000", host+":53", dnsQuery(1, "x.blocked.example"))
	// 2: an allowed name: dns.
	s.udp(10*ms, peer+":33001", host+":53", dnsQuery(2, "ok.example"))
	// 3-6: dns_qname over TCP: dns, established x2, dns-block.
	s.tcp(peer+":40000", host+":53").handshake(20*ms).send(30*ms, dnsTCP(dnsQuery(3, "x.blocked.example")))
	// 7-12: tls_sni allowed: https-handshake, established x2, tls-good,
	// the server's data established, the client's next segment tls-good
	// again from the flow's cached decision.
	s.tcp(peer+":40001", host+":443").handshake(100*ms).send(110*ms, s.hello("ok.example")).
		reply(120*ms, bytes.Repeat([]byte{0x17}, 200)).send(130*ms, bytes.Repeat([]byte{0x17}, 150))
	// 13-16: another name: https-handshake, established x2, tls-bad (length).
	s.tcp(peer+":40002", host+":443").handshake(200*ms).send(210*ms, s.hello("evil.example"))
	// 17-20: payload contains "SSH-": ssh-alt, established x2, then probe,
	// which only audits: verdict accept, action drop.
	s.tcp(peer+":40003", host+":8022").handshake(300*ms).send(310*ms, []byte("SSH-2.0-probe\r\n"))
	// 21: payload hex at offset 2: magic.
	s.udp(400*ms, peer+":7001", host+":7000", []byte{0, 0, 0xde, 0xad, 0xbe, 0xef})
	// 22: the same bytes at offset 0: default drop.
	s.udp(410*ms, peer+":7002", host+":7000", []byte{0xde, 0xad, 0xbe, 0xef, 0, 0})
	// 23: the same bytes past the depth: default drop.
	s.udp(420*ms, peer+":7003", host+":7000", append(make([]byte, 20), 0xde, 0xad, 0xbe, 0xef))
	// 24: tcp_flags S/SA, src set, family, iif: mgmt-syn, with mark 0x10.
	s.tcp(peer+":40004", host+":2222").syn(500 * ms)
	// 25: the same from outside $nets: default drop.
	s.tcp(stranger+":40005", host+":2222").syn(510 * ms)
	// 26: an ECN-setup SYN (SYN|ECE|CWR): S/SA looks at S and A only:
	// mgmt-syn.
	s.add(520*ms, packet.Spec{Src: addr(peer), Dst: addr(host), Proto: packet.ProtoTCP, SrcPort: 40006,
		DstPort: 2222, TCPFlags: packet.TCPSyn | packet.TCPEce | packet.TCPCwr, Seq: 1})
	// 27-29: three pings at once, limit 2/s burst 2: pings x2, default drop.
	for i := range 3 {
		s.echo(600*ms, peer, host, 9, uint16(i+1))
	}
	// 30: a second later: pings.
	s.echo(1600*ms, peer, host, 9, 4)
	// 31-33: offloadable rule: web, established x2 (both offload).
	s.tcp(peer+":40007", host+":80").handshake(1700 * ms)
	// 34-35: offload: false: web-alt, established.
	s.tcp(peer+":40008", host+":8080").syn(1800 * ms).synAck(1801 * ms)
	// 36: negated set: not-nets.
	s.udp(1900*ms, stranger+":5000", host+":9000", []byte("x"))
	// 37: IPv6 to the host's network: six.
	s.udp(1910*ms, "[2001:db8:2::5]:5000", "[2001:db8:1::10]:9000", []byte("x"))
	// 38: everything else to 9000: any-udp-9000.
	s.udp(1920*ms, peer+":5000", host+":9000", []byte("x"))
	// 39: port unreachable about the host's SYN-ACK of packet 32: related.
	quoted, _ := packet.Build(packet.Spec{Src: addr(host), Dst: addr(peer), Proto: packet.ProtoTCP,
		SrcPort: 80, DstPort: 40007, TCPFlags: packet.TCPSyn | packet.TCPAck, Seq: 5000, Ack: 1001})
	s.icmpError(2000*ms, "198.51.100.254", icmpUnreachable, icmpPortUnreach, quoted)
	// 40: an ACK of no known connection: invalid.
	s.tcp(peer+":40009", host+":80").ack(2100 * ms)
	// 41: a TCP SYN cut short of its header: on_error (accept on input).
	syn, _ := packet.Build(packet.Spec{Src: addr(peer), Dst: addr(host), Proto: packet.ProtoTCP,
		SrcPort: 40010, DstPort: 80, TCPFlags: packet.TCPSyn})
	s.raw(2200*ms, syn[:30])
	// 42: an IPv4 header claiming 16 bytes (IHL 4): on_error.
	bad := append([]byte{}, syn[:20]...)
	bad[0] = 0x44
	s.raw(2300*ms, bad)
}
