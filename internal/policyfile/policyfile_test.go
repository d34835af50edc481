package policyfile

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/secure"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
)

const passing = `version: 1
default: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dport: 80}
    action: accept
tests:
  - packet: {proto: tcp, dport: 80}
    expect: accept
`

func TestLoadAndGate(t *testing.T) {
	p := testpolicy.WriteFile(t, t.TempDir(), "policy.yaml", passing, 0o644)
	prog, err := Load(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Gate(p, prog, "refusing to run it"); err != nil || n != 1 {
		t.Fatalf("Gate = %d, %v; want 1 test, no error", n, err)
	}

	failing := testpolicy.WriteFile(t, t.TempDir(), "policy.yaml", strings.Replace(passing, "expect: accept", "expect: drop", 1), 0o644)
	prog, err = Load(failing, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Gate(failing, prog, "refusing to run it")
	var tf *TestsFailedError
	if !errors.As(err, &tf) {
		t.Fatalf("Gate of a failing test: %v", err)
	}
	// The failing test's FILE:LINE is the first thing said.
	if want := failing + ":8:"; !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "1 of 1 tests failed; refusing to run it") {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
}

func TestLoadRefuses(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), false); err == nil || !strings.HasPrefix(err.Error(), "policy: open ") {
		t.Errorf("missing file: %v", err)
	}
	p := testpolicy.WriteFile(t, t.TempDir(), "policy.yaml", passing, 0o666)
	_, err := Load(p, false)
	var ie *secure.InsecureError
	if !errors.As(err, &ie) {
		t.Errorf("world-writable policy: %v, want an InsecureError", err)
	}
	if _, err := Load(p, true); err != nil {
		t.Errorf("world-writable policy with the override: %v", err)
	}
}
