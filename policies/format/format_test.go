package format

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/examplepolicy"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/policies/policytest"
)

// commentLines counts the '#' comments of a file the plain way, apart from
// the lexer Format checks itself with.
func commentLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, "# "); i >= 0 && (i == 0 || l[i-1] == ' ') {
			out = append(out, strings.TrimSpace(l[i:]))
		}
	}
	return out
}

// TestExamples: formatting every example is idempotent, keeps every
// comment, and gives a policy that loads and passes its own tests.
func TestExamples(t *testing.T) {
	for _, f := range examplepolicy.Paths(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			once, err := Format(f, src)
			if err != nil {
				t.Fatal(err)
			}
			twice, err := Format(f, once)
			if err != nil {
				t.Fatal(err)
			}
			if string(once) != string(twice) {
				t.Errorf("not idempotent:\n--- once\n%s\n--- twice\n%s", once, twice)
			}
			if a, b := commentLines(string(src)), commentLines(string(once)); strings.Join(a, "\n") != strings.Join(b, "\n") {
				t.Errorf("comments changed:\n%q\n%q", a, b)
			}
			// Set files are read next to the original.
			read := func(p string) ([]byte, error) { return os.ReadFile(p) }
			pol, err := policyload.Load(f, once, read)
			if err != nil {
				t.Fatalf("formatted policy does not load: %v\n%s", err, once)
			}
			orig, err := policyload.Load(f, src, read)
			if err != nil {
				t.Fatal(err)
			}
			if len(pol.Rules) != len(orig.Rules) || len(pol.Tests) != len(orig.Tests) {
				t.Errorf("%d rules and %d tests, want %d and %d", len(pol.Rules), len(pol.Tests), len(orig.Rules), len(orig.Tests))
			}
			prog, err := policies.Compile(pol)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range policytest.Run(prog) {
				if !r.OK {
					t.Errorf("formatted policy fails its test: %v", r)
				}
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"key order and flow", `# head
rules:
  - action: accept   # why
    match:
      dport: 22
      proto: tcp
    name: ssh
version: 1
mode: audit
`, `# head
version: 1
mode: audit

rules:
  - name: ssh
    match: {proto: tcp, dport: 22}
    action: accept # why
`},
		{"long match goes block, long list too", `version: 1
rules:
  - name: icmp
    match: {proto: [icmp, icmpv6], icmp_type: [destination-unreachable, time-exceeded, packet-too-big, parameter-problem, echo-request, router-advertisement, router-solicitation]}
    action: accept
`, `version: 1

rules:
  - name: icmp
    match:
      proto: [icmp, icmpv6]
      icmp_type:
        - destination-unreachable
        - time-exceeded
        - packet-too-big
        - parameter-problem
        - echo-request
        - router-advertisement
        - router-solicitation
    action: accept
`},
		{"comment inside a match keeps it block", `version: 1
rules:
  - name: a
    match:
      # admins only
      src: 10.0.0.0/8
    action: accept
`, `version: 1

rules:
  - name: a
    match:
      # admins only
      src: 10.0.0.0/8
    action: accept
`},
		{"tag negation and unknown key kept", `version: 1
rules:
  - name: a
    zzz: 1
    match:
      src: !10.0.0.0/8
    action: drop
sets:
  b: [1.2.3.4]
`, `version: 1

sets:
  b: [1.2.3.4]

rules:
  - name: a
    match: {src: "!10.0.0.0/8"}
    action: drop
    zzz: 1
`},
		{"block default stays block, tests in order", `version: 1
default: {input: drop, output: accept}
tests:
  - expect: drop
    packet:
      dport: 80
      proto: tcp
`, `version: 1
default:
  input: drop
  output: accept

tests:
  - packet: {proto: tcp, dport: 80}
    expect: drop
`},
		{"empty sections", "version: 1\nsets:\nrules:\n  - name: all\n    match:\n    action: accept\ntests:\n",
			"version: 1\n\nsets:\n\nrules:\n  - name: all\n    match:\n    action: accept\n\ntests:\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Format("p.yaml", []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			again, err := Format("p.yaml", got)
			if err != nil || string(again) != string(got) {
				t.Errorf("not idempotent (%v):\n%s", err, again)
			}
		})
	}
}

func TestFormatErrors(t *testing.T) {
	// Nested aliases that expand to 10^9 nodes: refused, not walked.
	laughs := "version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i, c := range "bcdefghi" {
		prev := string("abcdefgh"[i])
		laughs += fmt.Sprintf("%c: &%c [%s]\n", c, c, strings.TrimSuffix(strings.Repeat("*"+prev+", ", 10), ", "))
	}
	for _, in := range []string{"", "rules: [\n", "- a\n", "version: 1\n---\nversion: 1\n", laughs} {
		if out, err := Format("p.yaml", []byte(in)); err == nil {
			t.Errorf("Format(%q) = %q, want an error", in, out)
		}
	}
}
