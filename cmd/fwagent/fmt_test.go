package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFmtExamplesCanonical: every shipped example is already canonical, so
// `fwagent fmt --check` passes on them (and fails CI when one is not).
func TestFmtExamplesCanonical(t *testing.T) {
	files, err := filepath.Glob(example("*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, exampleCapture("every-key.yaml"))
	code, out, errOut := fwagent(t, append([]string{"fmt", "--check"}, files...)...)
	if code != exitOK || out != "" || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q: want 0 and nothing", code, out, errOut)
	}
}

const reordered = `# A test policy.
rules:
  - action: accept # admins
    match: {dport: 22, proto: tcp}
    name: ssh
version: 1
`

const canonical = `# A test policy.
version: 1

rules:
  - name: ssh
    match: {proto: tcp, dport: 22}
    action: accept # admins
`

func TestFmtCheck(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", reordered)
	good := writeFile(t, dir, "good.yaml", canonical)
	code, out, errOut := fwagent(t, "fmt", "--check", good, bad)
	if code != exitFailed || out != bad+"\n" || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q: want %d and %q", code, out, errOut, exitFailed, bad+"\n")
	}
	if code, out, _ := fwagent(t, "fmt", "-l", good); code != exitOK || out != "" {
		t.Errorf("-l on a canonical file: exit %d, stdout %q", code, out)
	}
	// The file is left alone.
	if b, _ := os.ReadFile(bad); string(b) != reordered {
		t.Errorf("--check changed the file")
	}
}

func TestFmtPrintAndWrite(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "p.yaml", reordered)
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := fwagent(t, "fmt", p)
	if code != exitOK || out != canonical {
		t.Errorf("exit %d, stdout:\n%s\nstderr %s\nwant:\n%s", code, out, errOut, canonical)
	}
	if code, out, errOut := fwagent(t, "fmt", "-w", p); code != exitOK || out != "" {
		t.Errorf("-w: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != canonical {
		t.Errorf("-w wrote:\n%s", b)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("-w changed the mode: %v %v", st.Mode(), err)
	}
	if code, _, _ := fwagent(t, "fmt", "--check", p); code != exitOK {
		t.Errorf("--check after -w: exit %d", code)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("-w left files behind: %v", entries)
	}
}

func TestFmtErrors(t *testing.T) {
	dir := t.TempDir()
	broken := writeFile(t, dir, "broken.yaml", "version: 1\nrules: [\n")
	code, _, errOut := fwagent(t, "fmt", broken)
	if code != exitFailed || !strings.Contains(errOut, "broken.yaml") || !strings.Contains(errOut, "invalid YAML") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := fwagent(t, "fmt", filepath.Join(dir, "missing.yaml")); code != exitFailed {
		t.Errorf("missing file: exit %d", code)
	}
	if code, _, _ := fwagent(t, "fmt"); code != exitUsage {
		t.Errorf("no files: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := fwagent(t, "fmt", "-w", "--check", broken); code != exitUsage {
		t.Errorf("-w --check: exit %d, want %d", code, exitUsage)
	}
}
