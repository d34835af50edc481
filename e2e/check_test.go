package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// runAgent runs the agent binary in the test's own namespace (check and
// version touch no kernel state) and returns its combined output and exit
// code.
func runAgent(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(agentBin, args...).CombinedOutput()
	return string(out), exitCode(t, err, append([]string{"fwagent"}, args...)...)
}

// exitCode is the exit code of the command argv that finished with err (0
// when nil, -1 when a signal ended it); one that could not run fails the
// test.
func exitCode(t *testing.T, err error, argv ...string) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run %s: %v", strings.Join(argv, " "), err)
	return -1
}

const validPolicy = `version: 1
default:
  input: drop
  log: true
sets:
  admins: [10.0.0.0/8, "2001:db8:a::/48"]
rules:
  - name: ssh-admins
    match: {proto: tcp, src: $admins, dport: 22}
    action: accept
  - name: telnet
    match: {proto: tcp, dport: 23}
    action: drop
    log: true
tests:
  - packet: {hook: input, proto: tcp, src: 10.1.2.3, dport: 22, tcp_flags: S}
    expect: accept
    rule: ssh-admins
  - packet: {hook: input, proto: tcp, src: 192.0.2.1, dport: 22, tcp_flags: S}
    expect: drop
`

func TestCheck(t *testing.T) {
	requireAgent(t)
	for _, tc := range []struct {
		name     string
		policy   string
		wantCode int
		wantLine int // line of the error; 0 for a valid policy
	}{
		{"valid", validPolicy, 0, 0},
		{"unknown action", `version: 1
default: {input: drop}
rules:
  - name: x
    match: {proto: tcp, dport: 22}
    action: acept
`, 1, 6},
		{"unknown key", `version: 1
default: {input: drop}
rules:
  - name: x
    mtach: {proto: tcp, dport: 22}
    action: accept
`, 1, 5},
		{"unknown set", `version: 1
default: {input: drop}
rules:
  - name: x
    match: {proto: tcp, src: $nope}
    action: accept
`, 1, 5},
		{"duplicate rule name", `version: 1
default: {input: drop}
rules:
  - name: x
    match: {proto: tcp, dport: 22}
    action: accept
  - name: x
    match: {proto: tcp, dport: 23}
    action: drop
`, 1, 7},
		{"failing test", strings.Replace(validPolicy, "expect: drop", "expect: accept", 1), 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writePolicy(t, tc.policy)
			out, code := runAgent(t, "check", file)
			if code != tc.wantCode {
				t.Errorf("fwagent check exit %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			if tc.wantLine == 0 {
				return
			}
			re := regexp.MustCompile(regexp.QuoteMeta(file) + `:(\d+):(\d+): \S`)
			m := re.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("output lacks %s:LINE:COL: message:\n%s", file, out)
			}
			if m[1] != strconv.Itoa(tc.wantLine) {
				t.Errorf("error at line %s, want %d:\n%s", m[1], tc.wantLine, out)
			}
			if m[2] == "0" {
				t.Errorf("column 0, want 1-based:\n%s", out)
			}
		})
	}

	t.Run("examples", func(t *testing.T) {
		files, err := filepath.Glob("../policies/examples/*.yaml")
		if err != nil || len(files) == 0 {
			t.Fatalf("no example policies found (%v)", err)
		}
		for _, f := range files {
			if out, code := runAgent(t, "check", f); code != 0 {
				t.Errorf("fwagent check %s: exit %d, want 0:\n%s", f, code, out)
			}
		}
	})

	t.Run("no args", func(t *testing.T) {
		if out, code := runAgent(t, "check"); code != 2 {
			t.Errorf("fwagent check without a file: exit %d, want 2; output:\n%s", code, out)
		}
	})
	t.Run("version", func(t *testing.T) {
		out, code := runAgent(t, "version")
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Errorf("fwagent version: exit %d, output %q; want 0 and a version", code, out)
		}
	})
}
