package replay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/rawpcap"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/policies"
)

const examples = "../../policies/examples"

func program(t *testing.T, path string) *policies.Program {
	t.Helper()
	return testpolicy.CompileFile(t, path)
}

func programFrom(t *testing.T, src string) *policies.Program {
	t.Helper()
	return testpolicy.Compile(t, "p.yaml", src)
}

type rawFrame struct {
	ts   time.Time
	data []byte
}

// frames reads the IP packets of a capture.
func frames(t *testing.T, path string) []rawFrame {
	t.Helper()
	var out []rawFrame
	for _, f := range rawpcap.FileFrames(t, path) {
		out = append(out, rawFrame{f.Timestamp, f.Data})
	}
	return out
}

// rawPcap writes frames as a raw-IP pcap, each cut to snap bytes (0: whole)
// with its original length kept, as tcpdump -s writes them.
func rawPcap(fs []rawFrame, snap int) []byte {
	recs := make([]rawpcap.Record, len(fs))
	for i, f := range fs {
		recs[i] = rawpcap.Record{Time: f.ts, Data: f.data}
	}
	return rawpcap.File(snap, recs...)
}

type outcome struct {
	N             int
	Verdict, Rule string
	Frags         int
	Alone, Cut    bool
}

func run(t *testing.T, prog *policies.Program, file []byte, o Options) ([]outcome, Summary) {
	t.Helper()
	var out []outcome
	sum, err := Run(prog, bytes.NewReader(file), o, func(p *Packet) error {
		rule := prog.RuleName(p.Result.Decision.Rule)
		if p.Result.DecodeErr != nil {
			rule = "on_error"
		}
		out = append(out, outcome{p.N, p.Result.Decision.Effective().String(), rule, p.Fragments, p.Unreassembled, p.Cut})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, sum
}

// TestSnapLength: a capture written with tcpdump -s 96 (on Ethernet 82
// bytes of IP, on raw IP 96) decides every packet of the L3/L4 examples
// exactly as the whole capture does.
func TestSnapLength(t *testing.T) {
	pairs := []struct{ policy, capture string }{
		{"host-baseline.yaml", "host-baseline.pcap"},
		{"ssh-bruteforce.yaml", "ssh-bruteforce.pcap"},
		{"router.yaml", "router-lan.pcapng"},
		{"router.yaml", "router-wan.pcap"},
	}
	cutTotal := 0
	defer func() {
		if cutTotal == 0 {
			t.Error("no packet was longer than the snap length: the test tests nothing")
		}
	}()
	for _, pc := range pairs {
		for _, snap := range []int{96 - 14, 96} { // Ethernet, raw IP or cooked
			t.Run(fmt.Sprintf("%s/%d", pc.capture, snap), func(t *testing.T) {
				prog := program(t, filepath.Join(examples, pc.policy))
				fs := frames(t, filepath.Join(examples, "testdata", pc.capture))
				o := Options{Hook: nf.HookInput, Auto: true, Local: []netip.Prefix{netip.MustParsePrefix("192.168.1.1/32"), netip.MustParsePrefix("10.0.0.1/32")}}
				whole, _ := run(t, prog, rawPcap(fs, 0), o)
				cut, sum := run(t, programFromFile(t, filepath.Join(examples, pc.policy)), rawPcap(fs, snap), o)
				if len(whole) != len(cut) || len(whole) == 0 {
					t.Fatalf("%d packets whole, %d cut", len(whole), len(cut))
				}
				longer := 0
				for i := range whole {
					w, c := whole[i], cut[i]
					c.Cut = false
					if w != c {
						t.Errorf("packet %d: whole %+v, cut %+v", w.N, w, cut[i])
					}
					if len(fs[i].data) > snap {
						longer++
					}
				}
				cutTotal += sum.Cut
				t.Logf("%d of %d packets cut", sum.Cut, len(cut))
				if sum.Cut != longer {
					t.Errorf("%d packets decided from cut headers, %d were longer than %d", sum.Cut, longer, snap)
				}
			})
		}
	}
}

// TestSnapLengthSynthetic: TCP flows with data in both directions, UDP,
// ICMP echo and errors, IPv4 and IPv6, payloads up to 1400 bytes, through
// an L3/L4 policy with state, ports, lengths, flags and a limit: cut at
// tcpdump -s 96 (Ethernet), every packet is decided as when whole.
func TestSnapLengthSynthetic(t *testing.T) {
	const policy = `version: 1
default: {input: drop, output: accept, log: true}
rules:
  - name: established
    match: {state: [established, related]}
    action: accept
  - name: invalid
    match: {state: invalid}
    action: drop
  - name: big-udp
    match: {proto: udp, length: 1000-65535}
    action: drop
  - name: dns
    match: {proto: udp, dport: 53}
    limit: {rate: 5/s, burst: 5}
    action: accept
  - name: web
    hook: input
    match: {proto: tcp, dport: [80, 443], tcp_flags: S/SA}
    action: accept
  - name: ssh-v6
    match: {family: ipv6, proto: tcp, src: "2001:db8:1::/48", dport: 22}
    action: accept
  - name: pings
    match: {icmp_type: echo-request}
    action: accept
`
	var fs []rawFrame
	at := time.Unix(1000, 0)
	add := func(s packet.Spec) {
		b, err := packet.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		at = at.Add(7 * time.Millisecond)
		fs = append(fs, rawFrame{at, b})
	}
	payload := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	cli4, srv4 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("10.0.0.1")
	cli6, srv6 := netip.MustParseAddr("2001:db8:1::7"), netip.MustParseAddr("2001:db8:2::1")
	for i := range 40 {
		cli, srv := cli4, srv4
		if i%3 == 0 {
			cli, srv = cli6, srv6
		}
		sport := uint16(30000 + i)
		dport := []uint16{80, 443, 22, 8080}[i%4]
		tcp := func(fromCli bool, flags uint8, n int) {
			s := packet.Spec{Src: cli, Dst: srv, Proto: packet.ProtoTCP, SrcPort: sport, DstPort: dport, TCPFlags: flags, Payload: payload(n)}
			if !fromCli {
				s.Src, s.Dst, s.SrcPort, s.DstPort = srv, cli, dport, sport
			}
			add(s)
		}
		tcp(true, packet.TCPSyn, 0)
		tcp(false, packet.TCPSyn|packet.TCPAck, 0)
		tcp(true, packet.TCPAck, 0)
		tcp(true, packet.TCPAck|packet.TCPPsh, 100+i*30)
		tcp(false, packet.TCPAck|packet.TCPPsh, 1400)
		tcp(true, packet.TCPAck|packet.TCPFin, 0)
		add(packet.Spec{Src: cli, Dst: srv, Proto: packet.ProtoUDP, SrcPort: sport, DstPort: 53, Payload: payload(40 + i*35)})
		if cli.Is4() {
			add(packet.Spec{Src: cli, Dst: srv, Proto: packet.ProtoICMP, ICMPType: 8, ICMPID: uint16(i), Payload: payload(56 + i*10)})
			add(packet.Spec{Src: srv, Dst: cli, Proto: packet.ProtoICMP, ICMPType: 0, ICMPID: uint16(i), Payload: payload(56 + i*10)})
		} else {
			add(packet.Spec{Src: cli, Dst: srv, Proto: packet.ProtoICMPv6, ICMPType: 128, ICMPID: uint16(i), Payload: payload(56 + i*10)})
		}
		// A stray mid-flow segment nobody opened: invalid or new.
		add(packet.Spec{Src: cli, Dst: srv, Proto: packet.ProtoTCP, SrcPort: sport + 1000, DstPort: 80, TCPFlags: packet.TCPAck, Payload: payload(300)})
	}
	o := Options{Hook: nf.HookInput}
	whole, _ := run(t, programFrom(t, policy), rawPcap(fs, 0), o)
	cut, sum := run(t, programFrom(t, policy), rawPcap(fs, 96-14), o)
	if len(whole) != len(fs) || len(cut) != len(fs) {
		t.Fatalf("%d frames, %d decided whole, %d cut", len(fs), len(whole), len(cut))
	}
	rules := map[string]int{}
	for i := range whole {
		w, c := whole[i], cut[i]
		c.Cut = false
		if w != c {
			t.Errorf("packet %d (%d bytes): whole %+v, cut %+v", w.N, len(fs[i].data), w, cut[i])
		}
		rules[w.Rule]++
	}
	if sum.Cut < len(fs)/2 || len(rules) < 6 {
		t.Errorf("only %d of %d packets cut, rules hit %v: the test is too weak", sum.Cut, len(fs), rules)
	}
	t.Logf("%d of %d packets cut; rules %v", sum.Cut, len(fs), rules)
}

// programFromFile compiles a second, independent program (rate limits
// have their own buckets).
func programFromFile(t *testing.T, path string) *policies.Program { return program(t, path) }

// TestSnapLengthL7: an L7 rule whose bytes were cut does not match, and the
// packet falls through to later rules rather than to on_error.
func TestSnapLengthL7(t *testing.T) {
	prog := func() *policies.Program {
		return programFrom(t, `version: 1
default: drop
rules:
  - name: blocked
    match: {proto: udp, dport: 53, dns_qname: "*.blocked.example"}
    action: reject
  - name: dns
    match: {proto: udp, dport: 53}
    action: accept
`)
	}
	name := "averyveryveryverylongname.blocked.example"
	q := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range bytes.Split([]byte(name), []byte(".")) {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0, 0, 1, 0, 1)
	pkt, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.53"),
		Proto: packet.ProtoUDP, SrcPort: 4000, DstPort: 53, Payload: q})
	if err != nil {
		t.Fatal(err)
	}
	fs := []rawFrame{{time.Unix(1, 0), pkt}}
	whole, _ := run(t, prog(), rawPcap(fs, 0), Options{})
	cut, sum := run(t, prog(), rawPcap(fs, 40), Options{})
	if whole[0].Rule != "blocked" || cut[0].Rule != "dns" || !cut[0].Cut || sum.Cut != 1 {
		t.Errorf("whole %+v, cut %+v (summary %+v): want blocked, then dns from the cut headers", whole[0], cut[0], sum)
	}
	// A record that stores the cut length as the original length: the IP
	// length gives the cut away.
	lying := rawPcap(fs, 40)
	binary.LittleEndian.PutUint32(lying[24+12:], 40)
	liar, _ := run(t, prog(), lying, Options{})
	if liar[0].Rule != "dns" || !liar[0].Cut {
		t.Errorf("cut with original length = captured: %+v, want dns from the headers", liar[0])
	}
	// Cut inside the UDP header: on_error, as nothing can be decided.
	short, _ := run(t, prog(), rawPcap(fs, 24), Options{})
	if short[0].Rule != "on_error" {
		t.Errorf("cut in the UDP header: %+v, want on_error", short[0])
	}
}

// TestBadRecordAndSkips: a bad record is skipped with a warning and the
// packets after it are decided; skipped frames are counted by reason.
func TestBadRecordAndSkips(t *testing.T) {
	prog := programFrom(t, "version: 1\ndefault: accept\n")
	pkt, _ := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	file := rawPcap([]rawFrame{{time.Unix(1, 0), pkt}, {time.Unix(2, 0), pkt}, {time.Unix(3, 0), pkt}}, 0)
	// Make the second record's original length smaller than its captured.
	rec2 := 24 + 16 + len(pkt)
	binary.LittleEndian.PutUint32(file[rec2+12:], 10)
	// A fourth record that is not IP (version nibble 5).
	bad := bytes.Clone(pkt)
	bad[0] = 0x55
	file = append(file, rawPcap([]rawFrame{{time.Unix(4, 0), bad}}, 0)[24:]...)
	var warned []int
	out, sum := run(t, prog, file, Options{Warn: func(n int, _ string) { warned = append(warned, n) }})
	if len(out) != 2 || out[0].N != 1 || out[1].N != 3 || fmt.Sprint(warned) != "[2]" {
		t.Errorf("decided %+v, warnings %v", out, warned)
	}
	if sum.Frames != 4 || sum.Decided != 2 || sum.SkippedTotal() != 2 || sum.Skipped[capture.SkipBadRecord] != 1 || sum.Skipped[capture.SkipVersion] != 1 {
		t.Errorf("summary %+v", sum)
	}
}

func TestHookFor(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.9")
	local := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	tests := []struct {
		o        Options
		dir      capture.Direction
		src, dst netip.Addr
		want     nf.Hook
	}{
		{Options{Hook: nf.HookForward}, capture.DirIn, a, b, nf.HookForward},
		{Options{Auto: true}, capture.DirIn, a, b, nf.HookInput},
		{Options{Auto: true}, capture.DirOut, b, a, nf.HookOutput},
		{Options{Auto: true}, capture.DirOther, b, a, nf.HookForward},
		{Options{Auto: true, Local: local}, capture.DirUnknown, b, a, nf.HookInput},
		{Options{Auto: true, Local: local}, capture.DirUnknown, a, b, nf.HookOutput},
		{Options{Auto: true, Local: local}, capture.DirUnknown, b, b, nf.HookForward},
		{Options{Auto: true, Hook: nf.HookOutput}, capture.DirUnknown, b, a, nf.HookOutput},
	}
	for i, tt := range tests {
		if got := tt.o.HookFor(tt.dir, tt.src, tt.dst); got != tt.want {
			t.Errorf("%d: %v, want %v", i, got, tt.want)
		}
	}
}
