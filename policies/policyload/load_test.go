package policyload

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// fakeFiles serves set files from memory.
func fakeFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
}

const head = "version: 1\n"

func TestLoadErrors(t *testing.T) {
	files := map[string]string{
		"dir/bad.txt":   "# comment\n10.0.0.0/8\n  10.0.0.1/8 # oops\n",
		"dir/mixed.txt": "10.0.0.0/8\n22\n",
		"dir/two.txt":   "10.0.0.1 10.0.0.2\n",
	}
	tests := []struct {
		name, policy string
		at           string // FILE:LINE:COL
		msg          string // substring
	}{
		{"syntax", "version: 1\nrules: [\n", "dir/p.yaml:2:8", "invalid YAML"},
		{"unclosed flow mapping", "version: 1\nrules:\n  - name: a\n    match: {proto: tcp, dport: 22\n    action: accept\n", "dir/p.yaml:5:5", "invalid YAML"},
		{"tab indent", "version: 1\nrules:\n  - name: a\n\taction: accept\n", "dir/p.yaml:4:1", "invalid YAML"},
		{"bad indent", "version: 1\nrules:\n  - name: a\n   action: accept\n", "dir/p.yaml:4:4", "invalid YAML"},
		{"unterminated quote", "version: 1\nrules:\n  - name: \"a\n", "dir/p.yaml:3:11", "invalid YAML"},
		{"empty", "", "dir/p.yaml:1:1", "empty policy"},
		{"not a mapping", "- a\n", "dir/p.yaml:1:1", "policy must be a mapping"},
		{"no version", "mode: enforce\n", "dir/p.yaml:1:1", "missing version"},
		{"bad version", "version: 2\n", "dir/p.yaml:1:10", "unsupported version"},
		{"unknown top key", head + "rulez: []\n", "dir/p.yaml:2:1", `unknown key "rulez" in policy, did you mean "rules"?`},
		{"bad mode", head + "mode: enforcing\n", "dir/p.yaml:2:7", `did you mean "enforce"`},
		{"bad default", head + "default: {input: dorp}\n", "dir/p.yaml:2:18", `default input must be accept, drop, reject, got "dorp", did you mean "drop"?`},
		{"default unknown hook", head + "default: {inptu: drop}\n", "dir/p.yaml:2:11", `did you mean "input"`},
		{"on_error reject", head + "on_error: reject\n", "dir/p.yaml:2:11", "on_error must be accept, drop"},
		{"duplicate key", head + "mode: audit\nmode: enforce\n", "dir/p.yaml:3:1", "duplicate key"},
		{"host bits", head + "sets:\n  a: [10.0.0.1/8]\n", "dir/p.yaml:3:7", "host bits set, did you mean 10.0.0.0/8?"},
		{"host bits in rule", head + "rules:\n  - name: x\n    match: {src: 10.0.0.1/8}\n    action: drop\n", "dir/p.yaml:4:18", "did you mean 10.0.0.0/8"},
		{"mixed set", head + "sets:\n  a: [10.0.0.0/8, 22]\n", "dir/p.yaml:3:19", "mixes address and port"},
		{"set file error", head + "sets:\n  a: {file: bad.txt}\n", "dir/bad.txt:3:3", "host bits set"},
		{"set file mixed", head + "sets:\n  a: {file: mixed.txt}\n", "dir/mixed.txt:2:1", "mixes address and port"},
		{"set file two per line", head + "sets:\n  a: {file: two.txt}\n", "dir/two.txt:1:1", "one entry a line"},
		{"set file missing", head + "sets:\n  a: {file: nope.txt}\n", "dir/p.yaml:3:13", "cannot read set file"},
		{"set negation", head + "sets:\n  a: [\"!10.0.0.0/8\"]\n", "dir/p.yaml:3:7", "negation is not allowed inside a set"},
		{"set dollar", head + "sets:\n  $a: [1]\n", "dir/p.yaml:3:3", "without $"},
		{"bad entry", head + "sets:\n  a: [\"foo bar\"]\n", "dir/p.yaml:3:7", "not an address, CIDR, port or name"},
		{"bad address", head + "sets:\n  a: [10.0.0.256]\n", "dir/p.yaml:3:7", "invalid address"},
		{"port range", head + "sets:\n  a: [90-80]\n", "dir/p.yaml:3:7", "start is above end"},
		{"port too big", head + "sets:\n  a: [70000]\n", "dir/p.yaml:3:7", "ports are 0-65535"},
		{"unknown set", head + "sets:\n  admins: [10.0.0.0/8]\nrules:\n  - name: x\n    match: {src: $admin}\n    action: accept\n", "dir/p.yaml:6:18", "unknown set $admin, did you mean $admins?"},
		{"negated unknown set", head + "sets:\n  admins: [10.0.0.0/8]\nrules:\n  - name: x\n    match: {src: \"!$admnis\"}\n    action: accept\n", "dir/p.yaml:6:18", "did you mean $admins?"},
		{"port set as address", head + "sets:\n  web: [80, 443]\nrules:\n  - name: x\n    match: {dst: $web}\n    action: accept\n", "dir/p.yaml:6:18", "set $web is a port set; dst needs an address set"},
		{"address set as port", head + "sets:\n  a: [10.0.0.0/8]\nrules:\n  - name: x\n    match: {proto: tcp, dport: $a}\n    action: accept\n", "dir/p.yaml:6:32", "set $a is an address set; dport needs a port set"},
		{"name set as address", head + "sets:\n  ads: [ads.example]\nrules:\n  - name: x\n    match: {src: $ads}\n    action: accept\n", "dir/p.yaml:6:18", "is a name set"},
		{"no name", head + "rules:\n  - action: accept\n", "dir/p.yaml:3:5", "rule has no name"},
		{"empty name", head + "rules:\n  - name: \"\"\n    action: accept\n", "dir/p.yaml:3:11", "empty rule name"},
		{"null name", head + "rules:\n  - name:\n    action: accept\n", "dir/p.yaml:3:10", "rule name must be a value"},
		{"duplicate name", head + "rules:\n  - name: a\n    action: accept\n  - name: a\n    action: drop\n", "dir/p.yaml:5:11", `duplicate rule name "a" (first at line 3)`},
		{"no action", head + "rules:\n  - name: a\n", "dir/p.yaml:3:5", "has no action"},
		{"bad action", head + "rules:\n  - name: a\n    action: allow\n", "dir/p.yaml:4:13", "action must be accept, drop, reject"},
		{"unknown rule key", head + "rules:\n  - name: a\n    action: drop\n    matches: {}\n", "dir/p.yaml:5:5", `did you mean "match"?`},
		{"unknown match key", head + "rules:\n  - name: a\n    action: drop\n    match: {dprot: 22}\n", "dir/p.yaml:5:13", `unknown key "dprot" in match, did you mean "dport"?`},
		{"bad hook", head + "rules:\n  - name: a\n    hook: inptu\n    action: drop\n", "dir/p.yaml:4:11", `did you mean "input"`},
		{"bad proto", head + "rules:\n  - name: a\n    match: {proto: tpc}\n    action: drop\n", "dir/p.yaml:4:20", `unknown proto "tpc", did you mean "tcp"?`},
		{"icmp type with tcp", head + "rules:\n  - name: a\n    match: {proto: tcp, icmp_type: echo-request}\n    action: drop\n", "dir/p.yaml:4:36", "icmp_type needs proto icmp or icmpv6"},
		{"unknown icmp type", head + "rules:\n  - name: a\n    match: {proto: icmp, icmp_type: echo-reqest}\n    action: drop\n", "dir/p.yaml:4:37", `did you mean "echo-request"`},
		{"icmpv6 name with icmp", head + "rules:\n  - name: a\n    match: {proto: icmp, icmp_type: nd-neighbor-solicit}\n    action: drop\n", "dir/p.yaml:4:37", "unknown ICMP type"},
		{"ports with icmp", head + "rules:\n  - name: a\n    match: {proto: icmp, dport: 22}\n    action: drop\n", "dir/p.yaml:4:33", "dport needs a protocol with ports"},
		{"tcp_flags with udp", head + "rules:\n  - name: a\n    match: {proto: udp, tcp_flags: S/SA}\n    action: drop\n", "dir/p.yaml:4:36", "tcp_flags needs proto tcp"},
		{"bad tcp flag", head + "rules:\n  - name: a\n    match: {tcp_flags: X/SA}\n    action: drop\n", "dir/p.yaml:4:24", "unknown TCP flag"},
		{"tcp flag outside mask", head + "rules:\n  - name: a\n    match: {tcp_flags: S/A}\n    action: drop\n", "dir/p.yaml:4:24", "outside its mask"},
		{"family v4 with v6 address", head + "rules:\n  - name: a\n    match: {family: ipv4, src: \"2001:db8::/32\"}\n    action: drop\n", "dir/p.yaml:4:32", "is IPv6 but the rule's family is IPv4"},
		{"src v4 dst v6", head + "rules:\n  - name: a\n    match: {src: 10.0.0.0/8, dst: \"2001:db8::1\"}\n    action: drop\n", "dir/p.yaml:4:35", "src is IPv4 and dst is IPv6"},
		{"icmpv6 with v4 family", head + "rules:\n  - name: a\n    match: {family: ipv4, proto: icmpv6}\n    action: drop\n", "dir/p.yaml:4:34", "can never match"},
		{"icmp with v6 src", head + "rules:\n  - name: a\n    match: {proto: icmp, src: \"2001:db8::1\"}\n    action: drop\n", "dir/p.yaml:4:31", "can never match"},
		{"mark with drop", head + "rules:\n  - name: a\n    action: drop\n    mark: 5\n", "dir/p.yaml:5:11", "mark needs action accept"},
		{"mark too big", head + "rules:\n  - name: a\n    action: accept\n    mark: 0x100000000\n", "dir/p.yaml:5:11", "out of range"},
		{"offload with payload", head + "rules:\n  - name: a\n    action: accept\n    offload: true\n    match: {payload: {contains: x}}\n", "dir/p.yaml:5:14", "cannot offload"},
		{"bad limit rate", head + "rules:\n  - name: a\n    action: accept\n    limit: {rate: fast}\n", "dir/p.yaml:5:19", "limit rate must look like"},
		{"limit per", head + "rules:\n  - name: a\n    action: accept\n    limit: {rate: 1/s, per: source}\n", "dir/p.yaml:5:29", "limit per must be"},
		{"limit no rate", head + "rules:\n  - name: a\n    action: accept\n    limit: {burst: 3}\n", "dir/p.yaml:5:12", "limit needs a rate"},
		{"iif on output", head + "rules:\n  - name: a\n    hook: output\n    match: {iif: eth0}\n    action: accept\n", "dir/p.yaml:5:18", "iif never matches on hook output"},
		{"long ifname", head + "rules:\n  - name: a\n    match: {oif: abcdefghijklmnopq}\n    action: accept\n", "dir/p.yaml:4:18", "longer than 15"},
		{"bad state", head + "rules:\n  - name: a\n    match: {state: establised}\n    action: accept\n", "dir/p.yaml:4:20", `did you mean "established"`},
		{"dns and sni", head + "rules:\n  - name: a\n    match: {dns_qname: a.example, tls_sni: b.example}\n    action: drop\n", "dir/p.yaml:4:44", "cannot both match"},
		{"dns with icmp", head + "rules:\n  - name: a\n    match: {proto: icmp, dns_qname: a.example}\n    action: drop\n", "dir/p.yaml:4:37", "dns_qname needs proto udp or tcp"},
		{"bad name pattern", head + "rules:\n  - name: a\n    match: {tls_sni: \"a.*.example\"}\n    action: drop\n", "dir/p.yaml:4:22", "only as the first label"},
		{"payload hex", head + "rules:\n  - name: a\n    match: {payload: {hex: \"de ad zz\"}}\n    action: drop\n", "dir/p.yaml:4:28", "invalid character"},
		{"payload depth", head + "rules:\n  - name: a\n    match: {payload: {contains: abcdef, depth: 3}}\n    action: drop\n", "dir/p.yaml:4:48", "shorter than the 6-byte needle"},
		{"length range", head + "rules:\n  - name: a\n    match: {length: 100-50}\n    action: drop\n", "dir/p.yaml:4:21", "start is above end"},
		{"test unknown rule", head + "rules:\n  - name: web\n    action: accept\ntests:\n  - packet: {dport: 80}\n    expect: accept\n    rule: wbe\n", "dir/p.yaml:8:11", `unknown rule "wbe", did you mean "web"?`},
		{"test bad expect", head + "tests:\n  - packet: {dport: 80}\n    expect: allow\n", "dir/p.yaml:4:13", "expect must be accept"},
		{"test no expect", head + "tests:\n  - packet: {dport: 80}\n", "dir/p.yaml:3:5", "test has no expect"},
		{"test bad key", head + "tests:\n  - packet: {dprot: 80}\n    expect: drop\n", "dir/p.yaml:3:14", `did you mean "dport"`},
		{"test bad address", head + "tests:\n  - packet: {src: 10.0.0.0/8}\n    expect: drop\n", "dir/p.yaml:3:19", "must be one address"},
		{"reserved rule name", head + "rules:\n  - name: default\n    action: accept\n", "dir/p.yaml:3:11", `rule name "default" is reserved`},
		{"test rule typo near default", head + "tests:\n  - packet: {dport: 80}\n    expect: drop\n    rule: defualt\n", "dir/p.yaml:5:11", `did you mean "default"?`},
		// Errors come in file order, whatever the order of sections.
		{"first error first", head + "rules:\n  - name: a\n    action: nope\nsets:\n  b: [10.0.0.1/8]\n", "dir/p.yaml:4:13", "action must be"},
		{"set error before rule using it", head + "sets:\n  b: [10.0.0.1/8]\nrules:\n  - name: a\n    match: {src: $b}\n    action: drop\n", "dir/p.yaml:3:7", "host bits"},
		{"rule before broken set", head + "rules:\n  - name: a\n    match: {src: $b}\n    action: drop\nsets:\n  b: [10.0.0.1/8]\n", "dir/p.yaml:7:7", "host bits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load("dir/p.yaml", []byte(tc.policy), fakeFiles(files))
			if err == nil {
				t.Fatalf("loaded %d rules, want error %s: %s", len(p.Rules), tc.at, tc.msg)
			}
			if p != nil {
				t.Errorf("got a policy with the error")
			}
			var pe *policies.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *Error", err, err)
			}
			if got := fmt.Sprintf("%s:%d:%d", pe.File, pe.Line, pe.Col); got != tc.at {
				t.Errorf("error at %s, want %s (%v)", got, tc.at, err)
			}
			if !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", pe.Msg, tc.msg)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "dir/") {
					t.Errorf("error line %q is not FILE:LINE:COL: message", line)
				}
			}
		})
	}
}

func TestLoadWarnings(t *testing.T) {
	policy := head + `sets:
  unused: [10.0.0.0/8]
  empty: []
rules:
  - name: web
    match: {proto: tcp, dport: [80, 443]}
    action: accept
  - name: https-drop
    match: {proto: tcp, dport: 443, src: 192.0.2.0/24}
    action: drop
  - name: limited
    match: {proto: tcp, dport: 8080}
    limit: {rate: 1/s}
    action: accept
  - name: after-limited
    match: {proto: tcp, dport: 8080}
    action: drop
  - name: nobody
    match: {src: $empty}
    action: drop
  - name: iface
    hook: [input, output]
    match: {iif: eth0}
    action: accept
`
	p, err := Load("p.yaml", []byte(policy), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`p.yaml:3:3: warning: set $unused is never used`,
		`p.yaml:9:5: warning: rule "https-drop" is shadowed by rule "web" (line 6)`,
		`p.yaml:20:18: warning: src $empty: set $empty is empty`,
		`p.yaml:24:18: warning: rule "iface": iif never matches on hook output, so the rule applies to input only`,
	}
	got := strings.Join(p.Warnings, "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("warnings lack %q; got:\n%s", w, got)
		}
	}
	if strings.Contains(got, "after-limited") {
		t.Errorf("a rule after a limited rule is not shadowed; got:\n%s", got)
	}
}

func TestLoadValues(t *testing.T) {
	policy := head + `mode: audit
default: {input: reject, forward: accept, output: drop, log: true}
on_error: {output: drop}
sets:
  admins: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]
  web: [80, 8000-8099]
  ads: ["*.Ads.Example.", tracker.example]
rules:
  - name: r1
    hook: [input, forward]
    match:
      proto: [tcp, 132]
      src: ["!$admins", 172.16.0.0/12]
      dport: ["$web", "!8080"]
      iif: "eth*"
      state: [new, established]
    action: accept
    mark: 0x10
    log: {prefix: hello}
  - name: r2
    match: {icmp_type: [echo-request, 3]}
    limit: {rate: 6/m, per: flow, over: true}
    action: drop
    audit: true
  - name: r3
    match: {dns_qname: $ads, tcp_flags: /SA}
    action: reject
`
	p, err := Load("p.yaml", []byte(policy), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Audit || p.Default != [nf.NumHooks]policies.Action{policies.ActionReject, policies.ActionAccept, policies.ActionDrop} || !p.DefaultLog {
		t.Errorf("mode/default: %v %v %v", p.Audit, p.Default, p.DefaultLog)
	}
	if p.OnError != [nf.NumHooks]policies.Action{policies.ActionDrop, policies.ActionDrop, policies.ActionDrop} {
		t.Errorf("on_error: %v", p.OnError)
	}
	r1 := p.Rules[0]
	if r1.Hooks != 1<<nf.HookInput|1<<nf.HookForward || r1.Mark != 16 || !r1.HasMark || !r1.Log || r1.LogPrefix != "hello" {
		t.Errorf("r1 attributes: %+v", r1)
	}
	m := r1.Match
	if fmt.Sprint(m.Protos) != "[6 132]" || fmt.Sprint(m.Src.Neg) != "[10.0.0.0/8 2001:db8::/32 192.0.2.7/32]" ||
		fmt.Sprint(m.Src.Pos) != "[172.16.0.0/12]" || fmt.Sprint(m.Dport.Pos) != "[{80 80} {8000 8099}]" ||
		fmt.Sprint(m.Dport.Neg) != "[{8080 8080}]" || m.States != 3 || fmt.Sprint(m.Iif) != "[eth*]" {
		t.Errorf("r1 match: %+v", m)
	}
	r2 := p.Rules[1]
	if fmt.Sprint(r2.Match.Protos) != "[1 58]" || r2.Match.ICMP4Types[0] != 1<<8|1<<3 || r2.Match.ICMP6Types[2] != 1 || r2.Match.ICMP6Types[0] != 1<<3 {
		t.Errorf("r2 icmp: %+v", r2.Match)
	}
	if r2.Limit.RatePerSec != 0.1 || r2.Limit.Burst != 6 || r2.Limit.Per != policies.LimitFlow || !r2.Limit.Over {
		t.Errorf("r2 limit: %+v", r2.Limit)
	}
	r3 := p.Rules[2]
	if fmt.Sprint(r3.Match.DNSQName) != "[*.ads.example tracker.example]" || *r3.Match.TCPFlags != (policies.TCPFlags{Want: 0, Mask: 0x12}) ||
		fmt.Sprint(r3.Match.Protos) != "[6]" {
		t.Errorf("r3: %+v %+v", r3.Match, r3.Match.TCPFlags)
	}
}

// TestUnquotedNegation: `src: !10.0.0.0/8` is a YAML tag; a policy means a
// negation.
func TestUnquotedNegation(t *testing.T) {
	p, err := Load("p.yaml", []byte(head+"rules:\n  - name: a\n    match:\n      src: !10.0.0.0/8\n    action: drop\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p.Rules[0].Match.Src.Neg) != "[10.0.0.0/8]" {
		t.Errorf("src: %+v", p.Rules[0].Match.Src)
	}
}

func TestLoadEmptySections(t *testing.T) {
	p, err := Load("p.yaml", []byte("version: 1\nsets:\nrules:\n  - name: all\n    match:\n    action: accept\ntests:\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 1 || !p.Rules[0].Match.Src.Any() || len(p.Rules[0].Match.Protos) != 0 {
		t.Errorf("rules: %+v", p.Rules)
	}
}

// TestLoadEveryError: independent errors of one file are all reported, in
// file order, each FILE:LINE:COL, up to MaxErrors.
func TestLoadEveryError(t *testing.T) {
	tests := []struct {
		name, policy string
		want         []string // FILE:LINE:COL: message prefix, in order
	}{
		{"three typos in three rules", head + `rules:
  - name: a
    match: {proto: tcp, dprot: 22}
    action: accept
  - name: b
    actoin: drop
  - name: c
    match: {state: establised}
    action: accept
`, []string{`dir/p.yaml:4:25: unknown key "dprot" in match, did you mean "dport"?`,
			`dir/p.yaml:7:5: unknown key "actoin" in rule, did you mean "action"?`,
			`dir/p.yaml:9:20: unknown state "establised"`}},
		{"three typos in one rule", head + `rules:
  - name: a
    hook: inptu
    match: {proto: tcp, dprot: 22}
    action: acept
`, []string{`dir/p.yaml:4:11: unknown hook "inptu"`,
			`dir/p.yaml:5:25: unknown key "dprot" in match`,
			`dir/p.yaml:6:13: action must be accept, drop, reject, got "acept"`}},
		{"a bad key after a bad match, in file order", head + `rules:
  - name: a
    match: {proto: tcp, dprot: 22}
    actoin: accept
`, []string{`dir/p.yaml:4:25: unknown key "dprot" in match`,
			`dir/p.yaml:5:5: unknown key "actoin" in rule`}},
		{"top-level typo and a rule error", head + `defualt: drop
rules:
  - name: a
    action: nope
`, []string{`dir/p.yaml:2:1: unknown key "defualt" in policy, did you mean "default"?`,
			`dir/p.yaml:5:13: action must be`}},
		{"every bad set entry, a mix once", head + `sets:
  a: [10.0.0.1/8, 10.0.0.0/8, 300.1.1.1, 22, 23]
  b: {file: b.txt}
`, []string{`dir/p.yaml:3:7: set a: CIDR "10.0.0.1/8" has host bits set`,
			`dir/p.yaml:3:31: set a: invalid address "300.1.1.1"`,
			`dir/p.yaml:3:42: set a mixes address and port entries: "22"`,
			`dir/b.txt:1:1: set b: one entry a line`,
			`dir/b.txt:3:3: set b: CIDR "10.0.0.1/8" has host bits set`}},
		{"two bad values in a test packet, one in its expect", head + `tests:
  - packet: {hook: inptu, proto: tcpp, dport: 80}
    expect: acept
`, []string{`dir/p.yaml:3:20: unknown hook "inptu"`,
			`dir/p.yaml:3:34: unknown proto "tcpp"`,
			`dir/p.yaml:4:13: expect must be accept, drop, reject, got "acept"`}},
		{"yaml 1.1 booleans", head + `default: {log: yes}
rules:
  - name: a
    action: accept
    log: on
    audit: no
`, []string{`dir/p.yaml:2:16: default log must be true or false, got "yes" (a YAML 1.1 boolean: write true)`,
			`dir/p.yaml:6:10: log must be true, false or {prefix: TEXT}, got "on" (a YAML 1.1 boolean: write true)`,
			`dir/p.yaml:7:12: audit must be true or false, got "no" (a YAML 1.1 boolean: write false)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("dir/p.yaml", []byte(tc.policy), fakeFiles(map[string]string{"dir/b.txt": "1.2.3.4 5.6.7.8\n10.0.0.0/8\n  10.0.0.1/8\n"}))
			errs := policies.Errors(err)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tc.want[i]) {
					t.Errorf("error %d is %q, want %q...", i, e, tc.want[i])
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.want) {
				t.Errorf("error text has %d lines, want %d", got, len(tc.want))
			}
		})
	}
}

func TestLoadErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(head + "rules:\n")
	for i := range policies.MaxErrors + 5 {
		fmt.Fprintf(&b, "  - name: r%d\n    action: nope\n", i)
	}
	_, err := Load("p.yaml", []byte(b.String()), nil)
	var list *policies.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v is a %T, want *ErrorList", err, err)
	}
	if len(list.Errs) != policies.MaxErrors || list.More != 5 {
		t.Errorf("listed %d errors and %d more, want %d and 5", len(list.Errs), list.More, policies.MaxErrors)
	}
	if !strings.HasSuffix(err.Error(), "p.yaml: 5 more errors not shown") {
		t.Errorf("error text does not end with the count of the rest:\n%v", err)
	}
	var first *policies.Error
	if !errors.As(err, &first) || first.Line != 4 {
		t.Errorf("errors.As finds %v, want the first error, at line 4", first)
	}
}
