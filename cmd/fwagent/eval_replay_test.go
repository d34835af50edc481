package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/rawpcap"
)

// rawPcap is a raw-IP pcap of pkts, each cut to snap bytes (0: whole);
// origLen overrides a record's original length where set.
func rawPcap(t *testing.T, snap int, origLen map[int]int, pkts ...[]byte) []byte {
	t.Helper()
	recs := make([]rawpcap.Record, len(pkts))
	for i, p := range pkts {
		recs[i] = rawpcap.Record{Time: time.Unix(100+int64(i), 0), Data: p, OrigLen: origLen[i]}
	}
	return rawpcap.File(snap, recs...)
}

func TestEvalSummarySkippedAndCut(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "p.yaml", "version: 1\ndefault: drop\nrules:\n  - name: web\n    match: {proto: tcp, dport: 80}\n    action: accept\n")
	web, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: packet.ProtoTCP,
		SrcPort: 4000, DstPort: 80, TCPFlags: packet.TCPSyn, Payload: bytes.Repeat([]byte{'x'}, 500)})
	if err != nil {
		t.Fatal(err)
	}
	notIP := bytes.Clone(web)
	notIP[0] = 0x55
	capFile := writeFile(t, dir, "c.pcap", string(rawPcap(t, 82, map[int]int{2: 10}, web, notIP, web, web)))
	code, out, errOut := fwagent(t, "eval", "--summary", "--policy", pol, capFile)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`"web"                    accept            2 packets`,
		"frames 4: 2 packets decided, 2 frames skipped",
		"  skipped 1: IP version nibble disagrees with the link type",
		"  skipped 1: bad record (captured length exceeds original length)",
		"  cut by the snap length, decided from their headers: 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "frame 3 skipped: captured length 82 exceeds original length 10") {
		t.Errorf("stderr %q: want the bad record's warning", errOut)
	}
	// Per packet, the cut packets are marked.
	_, out, _ = fwagent(t, "eval", "--json", "--policy", pol, capFile)
	lines := evalLines(t, out)
	if l := lines[1]; l.Rule != "web" || !l.Cut || l.Length != len(web) {
		t.Errorf("packet 1: %+v", l)
	}
}

func TestEvalHookAuto(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "p.yaml", `version: 1
default: {input: drop, forward: drop, output: drop}
rules:
  - name: in
    hook: input
    action: accept
  - name: out
    hook: output
    action: accept
`)
	mk := func(src, dst string) []byte {
		b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	capFile := writeFile(t, dir, "c.pcap", string(rawPcap(t, 0, nil, mk("192.0.2.9", "10.0.0.1"), mk("10.0.0.1", "192.0.2.9"), mk("192.0.2.9", "192.0.2.8"))))
	code, out, errOut := fwagent(t, "eval", "--json", "--hook", "auto", "--local", "10.0.0.1", "--policy", pol, capFile)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := evalLines(t, out)
	for n, want := range map[int]string{1: "input/in", 2: "output/out", 3: "forward/default"} {
		if got := lines[n].Hook + "/" + lines[n].Rule; got != want {
			t.Errorf("packet %d: %s, want %s", n, got, want)
		}
	}
	if code, _, errOut := fwagent(t, "eval", "--local", "10.0.0.1", "--policy", pol, capFile); code != exitUsage || !strings.Contains(errOut, "--hook auto") {
		t.Errorf("--local without auto: exit %d, %q", code, errOut)
	}
	if code, _, _ := fwagent(t, "eval", "--hook", "auto", "--local", "nope", "--policy", pol, capFile); code != exitUsage {
		t.Errorf("--local nope: exit %d", code)
	}
}

// TestEvalFragments: every fragment of a reassembled datagram gets a line
// with the datagram's verdict, decided once, as live.
func TestEvalFragments(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "p.yaml", "version: 1\ndefault: drop\nrules:\n  - name: dns\n    match: {proto: udp, dport: 53}\n    action: accept\n")
	dgram, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: packet.ProtoUDP,
		SrcPort: 4000, DstPort: 53, Payload: bytes.Repeat([]byte{'q'}, 2000)})
	if err != nil {
		t.Fatal(err)
	}
	fs := packet.Fragment4(dgram, 1, 1480)
	// The last fragment first, as happens.
	capFile := writeFile(t, dir, "c.pcap", string(rawPcap(t, 0, nil, fs[1], fs[0])))
	code, out, errOut := fwagent(t, "eval", "--json", "--policy", pol, capFile)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := evalLines(t, out)
	for n := 1; n <= 2; n++ {
		if l := lines[n]; l.Rule != "dns" || l.Verdict != "accept" || l.Fragments != 2 || l.Datagram != 2 || l.Length != len(dgram) {
			t.Errorf("frame %d: %+v", n, l)
		}
	}
	_, out, _ = fwagent(t, "eval", "--summary", "--policy", pol, capFile)
	if !strings.Contains(out, `"dns"                    accept            1 packets`) || !strings.Contains(out, "reassembled: 1 datagrams from 2 fragments") {
		t.Errorf("summary:\n%s", out)
	}
	_, out, _ = fwagent(t, "eval", "--no-reassembly", "--policy", pol, capFile)
	if want := "1 drop \"default\" udp 192.0.2.1 -> 192.0.2.2\n2 accept \"dns\" udp 192.0.2.1:4000 -> 192.0.2.2:53\n"; out != want {
		t.Errorf("--no-reassembly:\n%s\nwant:\n%s", out, want)
	}
}
