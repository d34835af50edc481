package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/packet"
)

const ownerPolicy = `version: 1
default: {output: drop}
rules:
  - name: root-web
    hook: output
    match: {proto: tcp, dport: 443, uid: 0}
    action: accept
  - name: web-logged
    hook: output
    match: {proto: tcp, dport: 443}
    action: drop
    log: true
tests:
  - packet: {hook: output, proto: tcp, dport: 443, uid: root}
    expect: accept
    rule: root-web
  - packet: {hook: output, proto: tcp, dport: 443}
    expect: drop
    rule: web-logged
`

// TestOwnerCheckAndEval: check passes the owner tests and warns that eval
// cannot match the uid rule; eval warns the same, and the captured packet
// falls through to the next rule.
func TestOwnerCheckAndEval(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "p.yaml", ownerPolicy)
	warning := pol + `:6:37: warning: rule "root-web" matches uid, but captures carry no socket owner: under fwagent eval it never matches`
	code, out, errOut := fwagent(t, "check", pol)
	if code != exitOK || !strings.Contains(out, "2 tests passed") {
		t.Errorf("check: exit %d, %q %q", code, out, errOut)
	}
	if !strings.Contains(errOut, warning) {
		t.Errorf("check stderr %q, want %q", errOut, warning)
	}

	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := packet.Build(packet.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: packet.TCPSyn})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(time.Unix(0, 0), p); err != nil {
		t.Fatal(err)
	}
	capFile := writeFile(t, dir, "c.pcap", buf.String())
	code, out, errOut = fwagent(t, "eval", "--json", "--hook", "output", "--policy", pol, capFile)
	if code != exitOK {
		t.Fatalf("eval: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, warning) {
		t.Errorf("eval stderr %q, want %q", errOut, warning)
	}
	if got := evalLines(t, out)[1].Rule; got != "web-logged" {
		t.Errorf("eval decided by %q, want web-logged (the uid rule never matches a capture)", got)
	}
}
