package main

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
)

// rawPcap is a raw-IP pcap of pkts, each cut to snap bytes (0: whole);
// origLen overrides a record's original length where set.
func rawPcap(t *testing.T, snap int, origLen map[int]int, pkts ...[]byte) []byte {
	t.Helper()
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint32(b, 65535)
	b = le.AppendUint32(b, 101)
	for i, p := range pkts {
		data := p
		if snap > 0 && len(data) > snap {
			data = data[:snap]
		}
		orig := len(p)
		if o, ok := origLen[i]; ok {
			orig = o
		}
		b = le.AppendUint32(b, uint32(time.Unix(100, 0).Unix())+uint32(i))
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, uint32(len(data)))
		b = le.AppendUint32(b, uint32(orig))
		b = append(b, data...)
	}
	return b
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
