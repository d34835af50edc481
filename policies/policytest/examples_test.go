package policytest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"host-baseline.yaml", "log-only.yaml", "dns-blocklist.yaml",
		"tls-egress-allowlist.yaml", "ssh-bruteforce.yaml", "router.yaml",
		"workstation-egress.yaml", "server-nginx.yaml"} {
		if !containsSuffix(files, want) {
			t.Errorf("examples/%s is missing", want)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			pol, err := policyload.LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range pol.Warnings {
				t.Errorf("warning: %s", w)
			}
			prog, err := policies.Compile(pol)
			if err != nil {
				t.Fatal(err)
			}
			results := Run(prog)
			if len(results) < 3 {
				t.Errorf("only %d tests; every example documents itself with tests", len(results))
			}
			for _, r := range results {
				if !r.OK {
					t.Error(r)
				}
			}
		})
	}
}

func containsSuffix(files []string, suffix string) bool {
	for _, f := range files {
		if strings.HasSuffix(f, "/"+suffix) {
			return true
		}
	}
	return false
}

func TestRunReportsFailures(t *testing.T) {
	pol, err := policyload.Load("p.yaml", []byte(`version: 1
default: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dport: 80}
    action: accept
  - name: ssh
    match: {proto: tcp, dport: 22}
    limit: {rate: 1/h, burst: 1}
    action: accept
tests:
  - packet: {dport: 80}
    expect: drop
  - packet: {dport: 80}
    expect: accept
    rule: ssh
  - packet: {dport: 81}
    expect: accept
  - packet: {dport: 80}
    expect: accept
    rule: web
  - packet: {dport: 22}
    expect: accept
  - packet: {dport: 22}
    expect: drop
  - packet: {dport: 81}
    expect: drop
    rule: default
  - packet: {dport: 80}
    expect: accept
    rule: default
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := policies.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{"p.yaml", 12, 5, false, `expected drop, got accept by rule "web"`},
		{"p.yaml", 14, 5, false, `expected accept by rule "ssh", got accept by rule "web"`},
		{"p.yaml", 17, 5, false, `expected accept, got drop by default`},
		{"p.yaml", 19, 5, true, `accept by rule "web"`},
		{"p.yaml", 22, 5, true, `accept by rule "ssh"`},
		{"p.yaml", 24, 5, true, `drop by default`},
		{"p.yaml", 26, 5, true, `drop by default`},
		{"p.yaml", 29, 5, false, `expected accept by default, got accept by rule "web"`},
	}
	// Twice: each run starts from fresh buckets.
	for run := range 2 {
		got := Run(prog)
		if len(got) != len(want) {
			t.Fatalf("run %d: %d results, want %d", run, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("run %d: result %d = %v, want %v", run, i, got[i], want[i])
			}
		}
	}
}
