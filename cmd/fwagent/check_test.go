package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCheckExamples(t *testing.T) {
	files, err := filepath.Glob(example("*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, exampleCapture("every-key.yaml"))
	if len(files) < 7 {
		t.Fatalf("only %d example policies: %v", len(files), files)
	}
	okLine := regexp.MustCompile(`^(.+): ok \((\d+) rules, (\d+) tests passed\)\nkernel: \d+ of \d+ rules run in the kernel`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, out, errOut := fwagent(t, "check", f)
			if code != exitOK {
				t.Fatalf("exit %d:\n%s", code, errOut)
			}
			// Owner rules are right live and only silent under eval: the
			// examples may have those warnings, no others.
			var other []string
			for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
				if l != "" && !strings.Contains(l, "captures carry no socket owner") {
					other = append(other, l)
				}
			}
			if len(other) > 0 {
				t.Errorf("stderr (warnings in an example): %s", strings.Join(other, "\n"))
			}
			m := okLine.FindStringSubmatch(out)
			if m == nil || m[1] != f || m[2] == "0" || m[3] == "0" {
				t.Errorf("stdout %q: want %q: ok (N rules, M tests passed) with N, M > 0", out, f)
			}
		})
	}
}

// TestCheckBroken: every broken policy exits 1 with one FILE:LINE:COL error
// on stderr. Positions are counted by hand from the YAML below (lines and
// columns from 1, the column of the offending node).
func TestCheckBroken(t *testing.T) {
	cases := []struct {
		name   string
		policy string
		line   int
		col    int
		msg    string
	}{
		{"unknown match key", `version: 1
default: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dprot: 80}
    action: accept
`, 5, 25, `unknown key "dprot" in match, did you mean "dport"?`},
		{"unknown top-level key", `version: 1
defaults: {input: drop}
`, 2, 1, `unknown key "defaults" in policy, did you mean "default"?`},
		{"unknown rule key", `version: 1
rules:
  - name: a
    match: {proto: tcp}
    acton: accept
`, 5, 5, `unknown key "acton"`},
		{"unknown set with did-you-mean", `version: 1
sets:
  admins: [10.0.0.0/8]
rules:
  - name: ssh
    match: {proto: tcp, src: $admin, dport: 22}
    action: accept
`, 6, 30, `unknown set $admin, did you mean $admins?`},
		{"CIDR host bits", `version: 1
rules:
  - name: net
    match: {src: 10.0.0.1/8}
    action: accept
`, 4, 18, `CIDR "10.0.0.1/8" has host bits set, did you mean 10.0.0.0/8?`},
		{"CIDR host bits in a set", `version: 1
sets:
  nets: [192.168.0.0/16, 10.1.0.0/8]
rules:
  - name: net
    match: {src: $nets}
    action: accept
`, 3, 26, `has host bits set`},
		{"port set as address", `version: 1
sets:
  web: [80, 443]
rules:
  - name: x
    match: {src: $web}
    action: accept
`, 6, 18, `set $web is a port set; src needs an address set`},
		{"duplicate rule name", `version: 1
rules:
  - name: a
    match: {proto: tcp}
    action: accept
  - name: a
    match: {proto: udp}
    action: accept
`, 6, 11, `duplicate rule name "a" (first at line 3)`},
		{"empty rule name", `version: 1
rules:
  - name: ""
    match: {proto: tcp}
    action: accept
`, 3, 11, `empty rule name`},
		{"impossible rule", `version: 1
rules:
  - name: odd
    match: {proto: tcp, icmp_type: echo-request}
    action: accept
`, 4, 36, `the rule can never match`},
		{"bad action", `version: 1
rules:
  - name: a
    match: {proto: tcp}
    action: allow
`, 5, 13, `action must be accept, drop, reject, got "allow"`},
		{"bad limit rate", `version: 1
rules:
  - name: a
    match: {proto: tcp, dport: 80}
    action: accept
    limit: {rate: 10/x}
`, 6, 19, `limit rate unit must be s, m or h, got "x"`},
		{"duplicate key", `version: 1
default: {input: drop}
default: {input: accept}
`, 3, 1, `duplicate key "default" in policy (first at line 2)`},
		{"unsupported version", `version: 2
`, 1, 10, `unsupported version "2"`},
		{"test names an unknown rule", `version: 1
default: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dport: 80}
    action: accept
tests:
  - packet: {hook: input, proto: tcp, dport: 80}
    expect: accept
    rule: ssh
`, 10, 11, `unknown rule "ssh"`},
		{"failing test", `version: 1
default: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dport: 80}
    action: accept
tests:
  - packet: {hook: input, proto: tcp, dport: 22}
    expect: accept
  - packet: {hook: input, proto: tcp, dport: 80}
    expect: drop
`, 8, 5, `test failed: expected accept, got drop by default`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "policy.yaml", c.policy)
			code, out, errOut := fwagent(t, "check", p)
			if code != exitFailed {
				t.Errorf("exit %d, want %d", code, exitFailed)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			want := fmt.Sprintf("%s:%d:%d: ", p, c.line, c.col)
			first, _, _ := strings.Cut(errOut, "\n")
			if !strings.HasPrefix(first, want) || !strings.Contains(first, c.msg) {
				t.Errorf("stderr:\n%s\nwant a first line %s...%s", errOut, want, c.msg)
			}
		})
	}
}

// TestCheckFailingTests: every failing test is reported with its own line,
// then a count.
func TestCheckFailingTests(t *testing.T) {
	p := writeFile(t, t.TempDir(), "p.yaml", `version: 1
default: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dport: 80}
    action: accept
tests:
  - packet: {hook: input, proto: tcp, dport: 80}
    expect: drop
  - packet: {hook: input, proto: tcp, dport: 80}
    expect: accept
  - packet: {hook: input, proto: tcp, dport: 80}
    expect: accept
    rule: web
  - packet: {hook: input, proto: tcp, dport: 443}
    expect: accept
    rule: web
`)
	code, out, errOut := fwagent(t, "check", p)
	if code != exitFailed || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	want := p + `:8:5: test failed: expected drop, got accept by rule "web"
` + p + `:15:5: test failed: expected accept, got drop by default
` + p + `: 2 of 4 tests failed
`
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
}

func TestCheckWarnings(t *testing.T) {
	p := writeFile(t, t.TempDir(), "p.yaml", `version: 1
rules:
  - name: all-tcp
    match: {proto: tcp}
    action: accept
  - name: web
    match: {proto: tcp, dport: 80}
    action: drop
`)
	code, out, errOut := fwagent(t, "check", p)
	if code != exitOK {
		t.Errorf("a warning is not an error: exit %d", code)
	}
	if !strings.HasPrefix(errOut, p+`:6:5: warning: rule "web" is shadowed by rule "all-tcp"`) {
		t.Errorf("stderr %q", errOut)
	}
	if out != p+": ok (2 rules, 0 tests passed)\nkernel: 2 of 2 rules run in the kernel (--kernel-rules auto)\n" {
		t.Errorf("stdout %q", out)
	}
}

func TestCheckStrict(t *testing.T) {
	p := writeFile(t, t.TempDir(), "p.yaml", `version: 1
rules:
  - name: all-tcp
    match: {proto: tcp}
    action: accept
  - name: web
    match: {proto: tcp, dport: 80}
    action: drop
`)
	code, out, errOut := fwagent(t, "check", "--strict", p)
	if code != exitFailed || out != "" {
		t.Errorf("exit %d, stdout %q: want %d and nothing", code, out, exitFailed)
	}
	want := p + `:6:5: warning: rule "web" is shadowed by rule "all-tcp"`
	if !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "1 warnings, which --strict makes errors") {
		t.Errorf("stderr %q", errOut)
	}
	// Without warnings --strict passes.
	if code, _, errOut := fwagent(t, "check", "--strict", example("host-baseline.yaml")); code != exitOK {
		t.Errorf("--strict on an example: exit %d: %s", code, errOut)
	}
}

// TestCheckEveryError: a file with three typos gets three FILE:LINE:COL
// errors, one line each, in file order.
func TestCheckEveryError(t *testing.T) {
	p := writeFile(t, t.TempDir(), "p.yaml", `version: 1
defualt: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dprot: 80}
    action: accept
  - name: ssh
    match: {proto: tcp, dport: 22}
    action: acept
`)
	code, out, errOut := fwagent(t, "check", p)
	if code != exitFailed || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	want := p + `:2:1: unknown key "defualt" in policy, did you mean "default"?
` + p + `:5:25: unknown key "dprot" in match, did you mean "dport"?
` + p + `:9:13: action must be accept, drop, reject, got "acept", did you mean "accept"?
`
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
}

func TestCheckSetFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "nets.txt", "# comment\n10.0.0.0/8\n192.168.1.1/24\n")
	p := writeFile(t, dir, "p.yaml", `version: 1
sets:
  nets: {file: nets.txt}
rules:
  - name: a
    match: {src: $nets}
    action: accept
`)
	code, _, errOut := fwagent(t, "check", p)
	if code != exitFailed {
		t.Errorf("exit %d", code)
	}
	// The error points into the set file, at the offending line.
	if !strings.HasPrefix(errOut, filepath.Join(dir, "nets.txt")+":3:") || !strings.Contains(errOut, "host bits") {
		t.Errorf("stderr %q", errOut)
	}

	missing := writeFile(t, dir, "m.yaml", `version: 1
sets:
  bad: {file: nothere.txt}
rules:
  - name: a
    match: {src: $bad}
    action: accept
`)
	code, _, errOut = fwagent(t, "check", missing)
	if code != exitFailed || !strings.HasPrefix(errOut, missing+":3:15: ") || !strings.Contains(errOut, "nothere.txt") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestCheckUsage(t *testing.T) {
	for _, args := range [][]string{
		{"check"},
		{"check", "a.yaml", "b.yaml"},
		{"check", "--bogus", "a.yaml"},
		{"no-such-command"},
	} {
		code, _, errOut := fwagent(t, args...)
		if code != exitUsage && args[0] == "check" {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, errOut)
		}
		if code == exitOK {
			t.Errorf("%v: exit 0", args)
		}
		if errOut == "" {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
	code, _, errOut := fwagent(t, "check", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != exitFailed || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}

// TestCheckKernelRules: check names each rule that needs userspace, and why.
func TestCheckKernelRules(t *testing.T) {
	code, out, errOut := fwagent(t, "check", example("tls-egress-allowlist.yaml"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{"kernel: 3 of 4 rules run in the kernel", "rule https-allowed: tls_sni needs userspace\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout lacks %q:\n%s", w, out)
		}
	}
}
