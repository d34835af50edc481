package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// changedBaseline is host-baseline with the web set narrowed to 80: the
// web rule's match changes, and the capture's HTTPS SYN (packet 8) goes
// from accepted by "web" to dropped by the default.
func changedBaseline(t *testing.T) (oldPath, newPath string) {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(example("host-baseline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	admins, err := os.ReadFile(example("admins.txt"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "admins.txt", string(admins))
	changed := strings.Replace(string(src), "web: [80, 443]", "web: [80]", 1)
	if changed == string(src) {
		t.Fatal("host-baseline.yaml no longer has web: [80, 443]")
	}
	changed = strings.Replace(changed, "    limit: {rate: 10/s, burst: 20}\n", "    limit: {rate: 10/s, burst: 10}\n", 1)
	return example("host-baseline.yaml"), writeFile(t, dir, "new.yaml", changed)
}

func TestDiffExamples(t *testing.T) {
	oldPath, newPath := changedBaseline(t)
	code, out, errOut := fwagent(t, "diff", oldPath, newPath)
	if code != diffChanged || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{`set $web changed (-443)`, `rule "web" changed: match.dport`, `rule "ping" changed: limit`} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = fwagent(t, "diff", "--capture", exampleCapture("host-baseline.pcap"), oldPath, newPath)
	if code != diffChanged {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"41 packets, ",
		`  8 input: accept "web" -> drop "default"  tcp 203.0.113.9:40002 -> 192.0.2.10:443`,
		"flows:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff --capture lacks %q:\n%s", want, out)
		}
	}
	// The burst of 10 instead of 20 sends the pings past the 10th of the
	// burst to the default: the JSON counts them with the web packet.
	code, out, _ = fwagent(t, "diff", "--json", "--capture", exampleCapture("host-baseline.pcap"), oldPath, newPath)
	var d diffJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != diffChanged {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if d.Capture == nil || d.Capture.VerdictChanged != 11 || d.Capture.Packets != 41 || len(d.Changes) != 3 {
		t.Errorf("json: %+v %+v", d.Changes, d.Capture)
	}
	for _, c := range d.Capture.Changed {
		if c.Old.Rule != "web" && c.Old.Rule != "ping" {
			t.Errorf("packet %d changed from %v: only web and ping packets may", c.N, c.Old)
		}
	}
}

func TestDiffSameAndTrouble(t *testing.T) {
	p := example("host-baseline.yaml")
	code, out, _ := fwagent(t, "diff", "--capture", exampleCapture("host-baseline.pcap"), p, p)
	if code != diffSame || !strings.Contains(out, "policies: no change") || !strings.Contains(out, "0 change verdict, 0 change rule only") {
		t.Errorf("a policy against itself: exit %d:\n%s", code, out)
	}
	dir := t.TempDir()
	broken := writeFile(t, dir, "b.yaml", "version: 1\nrules:\n  - name: a\n    action: nope\n")
	if code, _, errOut := fwagent(t, "diff", p, broken); code != diffTrouble || !strings.Contains(errOut, "b.yaml:4:13") {
		t.Errorf("broken policy: exit %d, %q", code, errOut)
	}
	if code, _, _ := fwagent(t, "diff", p); code != exitUsage {
		t.Errorf("one argument: exit %d", code)
	}
	if code, _, _ := fwagent(t, "diff", "--capture", filepath.Join(dir, "none.pcap"), p, p); code != diffTrouble {
		t.Errorf("missing capture: exit %d", code)
	}
}
