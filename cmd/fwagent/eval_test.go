package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/packet"
)

// counts is packets per "rule/verdict".
type counts map[string]uint64

// evalCase is one example capture through eval, with the per-rule counts
// derived from the capture's design (internal/testing/examplecap/examples.go: the
// comment above each packet group names the rule it is meant to hit).
type evalCase struct {
	name    string
	policy  string
	capture string
	flags   []string
	want    counts
}

func evalCases() []evalCase {
	// The client segments after a ClientHello reuse the decision its
	// tls_sni rule cached on the flow, whatever the replies decided.
	tlsAllowed, tlsOther := uint64(3), uint64(1)
	everyGood, everyBad := uint64(2), uint64(1)
	return []evalCase{
		{
			name: "host-baseline", policy: example("host-baseline.yaml"), capture: exampleCapture("host-baseline.pcap"),
			flags: []string{"--hook", "input"},
			want: counts{
				"ssh-admins/accept": 2, // packets 1 and 14 (IPv6)
				// 2-5, 9-12, 13 (related ICMP error), 15
				"established/accept": 10,
				"default/drop":       5, // 6, 7, 36, 37 (pings over the burst), 39
				"web/accept":         1, // 8
				"ping/accept":        21,
				"invalid/drop":       2, // 40, 41
			},
		},
		{
			name: "log-only (audit: every verdict accept)", policy: example("log-only.yaml"), capture: exampleCapture("log-only.pcapng"),
			flags: []string{"--hook", "input"},
			want: counts{
				"ssh/accept": 1, "established/accept": 2, "default/accept": 2, "ping/accept": 1, "web/accept": 1,
			},
		},
		{
			name: "dns-blocklist", policy: example("dns-blocklist.yaml"), capture: exampleCapture("dns-blocklist.pcap"),
			flags: []string{"--hook", "output"},
			want: counts{
				"dns-blocked/reject": 5, // 1, 2, 5, 6, 11 (over TCP)
				"default/accept":     7,
				// The TCP flow's packets before and after its query:
				// accepted while the rule waits for a whole message.
				"dns-blocked/pending": 4,
			},
		},
		{
			name: "tls-egress-allowlist", policy: example("tls-egress-allowlist.yaml"), capture: exampleCapture("tls-egress-allowlist.pcap"),
			flags: []string{"--hook", "output"},
			want: counts{
				"dns/accept":            1,
				"https-allowed/pending": 6, // SYN and ACK of three flows: no hello yet
				"https-allowed/accept":  tlsAllowed,
				"https-other/reject":    tlsOther,
				"default/drop":          5, // three SYN-ACKs, the server's data, plain HTTP
			},
		},
		{
			name: "ssh-bruteforce", policy: example("ssh-bruteforce.yaml"), capture: exampleCapture("ssh-bruteforce.pcap"),
			flags: []string{"--hook", "input"},
			want: counts{
				"ssh/accept":          7, // 1, 5, 6, 9, 10-12
				"established/accept":  3, // 2-4
				"ssh-bruteforce/drop": 3, // 7, 8, 13
			},
		},
		{
			name: "router lan to wan", policy: example("router.yaml"), capture: exampleCapture("router-lan.pcapng"),
			flags: []string{"--hook", "forward", "--iif", "lan0", "--oif", "wan0"},
			want: counts{
				"lan-out/accept":     2, // 2, 9
				"established/accept": 5, // 3-6, 10
				"lan-smb-out/reject": 3, // 7, 8, 12
				"default/drop":       1, // 11
			},
		},
		{
			name: "router wan to lan", policy: example("router.yaml"), capture: exampleCapture("router-wan.pcap"),
			flags: []string{"--hook", "forward", "--iif", "wan0", "--oif", "lan0"},
			want: counts{
				"published-web/accept": 2, // 1, 7
				"established/accept":   2, // 2, 3
				"default/drop":         2, // 4, 6
				"spoofed-lan/drop":     1, // 5
			},
		},
		{
			name: "every key", policy: exampleCapture("every-key.yaml"), capture: exampleCapture("every-key.pcap"),
			flags: []string{"--hook", "input", "--iif", "eth0"},
			want: counts{
				"dns-block/reject": 2, // 1, 6 (TCP)
				"dns/accept":       1,
				// Packets of the TCP DNS and TLS flows without a whole
				// message or hello: accepted while the rule waits.
				"dns-block/pending":   2,
				"tls-good/pending":    4,
				"established/accept":  9,
				"tls-good/accept":     everyGood,
				"tls-bad/reject":      everyBad,
				"ssh-alt/accept":      1, // 17
				"probe/accept":        1, // 20: audit
				"magic/drop":          1, // 21
				"default/drop":        4, // 22, 23, 25, 29
				"mgmt-syn/accept":     2, // 24, 26
				"pings/accept":        3, // 27, 28, 30
				"web/accept":          1, // 31
				"web-alt/accept":      1, // 34
				"not-nets/drop":       1, // 36
				"six/accept":          1, // 37
				"any-udp-9000/accept": 1, // 38
				"related/accept":      1, // 39
				"invalid/drop":        1, // 40
				"on_error/accept":     2, // 41, 42: on_error input is accept
			},
		},
		{
			// The same capture on the forward hook: mgmt-syn is input-only
			// and on_error forward is drop.
			name: "every key on forward", policy: exampleCapture("every-key.yaml"), capture: exampleCapture("every-key.pcap"),
			flags: []string{"--hook", "forward", "--iif", "eth0"},
			want: counts{
				"dns-block/reject": 2, "dns/accept": 1, "established/accept": 9, "dns-block/pending": 2, "tls-good/pending": 4,
				"tls-good/accept": everyGood, "tls-bad/reject": everyBad, "ssh-alt/accept": 1, "probe/accept": 1,
				"magic/drop": 1, "default/drop": 6, "pings/accept": 3, "web/accept": 1, "web-alt/accept": 1,
				"not-nets/drop": 1, "six/accept": 1, "any-udp-9000/accept": 1, "related/accept": 1,
				"invalid/drop": 1, "on_error/drop": 2,
			},
		},
	}
}

func TestEvalSummary(t *testing.T) {
	for _, c := range evalCases() {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"eval", "--summary", "--json", "--policy", c.policy}, c.flags...)
			code, out, errOut := fwagent(t, append(args, c.capture)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			got := counts{}
			var rows []summaryRow
			lines := strings.Split(strings.TrimSpace(out), "\n")
			// The last line accounts for every frame.
			var fs frameSummary
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &fs); err != nil || fs.Frames == 0 {
				t.Fatalf("last line %q is not the frame summary: %v", lines[len(lines)-1], err)
			}
			skipped := 0
			for _, n := range fs.Skipped {
				skipped += n
			}
			if fs.Frames != fs.Decided+skipped+fs.Fragments-fs.Reassembled {
				t.Errorf("frames %d != %d decided + %d skipped", fs.Frames, fs.Decided, skipped)
			}
			sc := bufio.NewScanner(strings.NewReader(strings.Join(lines[:len(lines)-1], "\n")))
			for sc.Scan() {
				var r summaryRow
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				if r.Bytes < r.Packets*20 {
					t.Errorf("%s/%s: %d bytes for %d packets", r.Rule, r.Verdict, r.Bytes, r.Packets)
				}
				rows = append(rows, r)
				got[r.Rule+"/"+r.Verdict] += r.Packets
			}
			if !maps.Equal(got, c.want) {
				t.Errorf("per-rule counts:\n got  %v\n want %v", sortedCounts(got), sortedCounts(c.want))
			}
			if !slices.IsSortedFunc(rows, func(a, b summaryRow) int {
				return strings.Compare(a.Rule+"\x00"+a.Verdict, b.Rule+"\x00"+b.Verdict)
			}) {
				t.Errorf("summary rows not sorted by rule and verdict")
			}

			// The per-packet output must add up to the same counts.
			args = append([]string{"eval", "--json", "--policy", c.policy}, c.flags...)
			code, out, errOut = fwagent(t, append(args, c.capture)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			per := counts{}
			for _, l := range evalLines(t, out) {
				if l.Pending {
					l.Verdict = "pending"
				}
				per[l.Rule+"/"+l.Verdict]++
			}
			if !maps.Equal(per, got) {
				t.Errorf("per-packet lines add up to %v, summary says %v", sortedCounts(per), sortedCounts(got))
			}
		})
	}
}

func sortedCounts(c counts) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(c)) {
		fmt.Fprintf(&b, "%s=%d ", k, c[k])
	}
	return b.String()
}

func evalLines(t *testing.T, out string) map[int]evalLine {
	t.Helper()
	lines := map[int]evalLine{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l evalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if _, dup := lines[l.N]; dup {
			t.Fatalf("packet number %d twice", l.N)
		}
		lines[l.N] = l
	}
	return lines
}

// TestEvalPackets checks single packets' JSON lines field by field: the
// fields each docs/policy.md key shows up in.
func TestEvalPackets(t *testing.T) {
	type want struct {
		file    string
		flags   []string
		capture string
		n       int
		line    evalLine
	}
	everyKey := []string{"--hook", "input", "--iif", "eth0"}
	ek := func(n int, l evalLine) want {
		l.N = n
		return want{exampleCapture("every-key.yaml"), everyKey, exampleCapture("every-key.pcap"), n, l}
	}
	tcp4 := func(l evalLine, src string, sport uint16, dst string, dport uint16) evalLine {
		l.Family, l.Proto, l.Src, l.Sport, l.Dst, l.Dport = "ipv4", "tcp", src, sport, dst, dport
		return l
	}
	const host, peer = "192.0.2.10", "198.51.100.5"
	cases := []want{
		// dns_qname over UDP, reject with log: {prefix}.
		ek(1, evalLine{Verdict: "reject", Action: "reject", Rule: "dns-block", Hook: "input", State: "new",
			Family: "ipv4", Proto: "udp", Src: peer, Sport: 33000, Dst: host, Dport: 53, Length: 63, Log: true, Prefix: "dns"}),
		// dns_qname over TCP, on an established flow.
		ek(6, tcp4(evalLine{Verdict: "reject", Action: "reject", Rule: "dns-block", Hook: "input", State: "established",
			Length: 77, Log: true, Prefix: "dns"}, peer, 40000, host, 53)),
		// A rule matching state: established offloads by default.
		ek(4, tcp4(evalLine{Verdict: "accept", Action: "accept", Rule: "established", Hook: "input", State: "established",
			Length: 40, Offload: true}, host, 53, peer, 40000)),
		// tls_sni: L7 never offloads.
		ek(10, tcp4(evalLine{Verdict: "accept", Action: "accept", Rule: "tls-good", Hook: "input", State: "established",
			Length: 310}, peer, 40001, host, 443)),
		// payload with audit: true: the kernel accepts, the action is drop.
		ek(20, tcp4(evalLine{Verdict: "accept", Action: "drop", Rule: "probe", Hook: "input", State: "established",
			Length: 55, Log: true, Prefix: "probe", Audit: true}, peer, 40003, host, 8022)),
		// mark: set on accept; tcp_flags make it per packet (no offload).
		ek(24, tcp4(evalLine{Verdict: "accept", Action: "accept", Rule: "mgmt-syn", Hook: "input", State: "new",
			Length: 40, Mark: 0x10}, peer, 40004, host, 2222)),
		// offload: false.
		ek(34, tcp4(evalLine{Verdict: "accept", Action: "accept", Rule: "web-alt", Hook: "input", State: "new",
			Length: 40}, peer, 40008, host, 8080)),
		// An offloadable rule.
		ek(31, tcp4(evalLine{Verdict: "accept", Action: "accept", Rule: "web", Hook: "input", State: "new",
			Length: 40, Offload: true}, peer, 40007, host, 80)),
		// The third ping at once is over the limit: falls to the default,
		// which logs.
		ek(29, evalLine{Verdict: "drop", Action: "drop", Rule: "default", Hook: "input", State: "new",
			Family: "ipv4", Proto: "icmp", Src: peer, Dst: host, Length: 32, Log: true, Prefix: "default"}),
		// An ICMP error about a tracked flow: related, and never offloaded
		// (the conntrack entry it carries is the quoted flow's).
		ek(39, evalLine{Verdict: "accept", Action: "accept", Rule: "related", Hook: "input", State: "related",
			Family: "ipv4", Proto: "icmp", Src: "198.51.100.254", Dst: host, Length: 68}),
		// on_error: the packet is not decoded, so no tuple.
		ek(41, evalLine{Verdict: "accept", Action: "accept", Rule: "on_error", Hook: "input", Length: 30,
			Error: "packet: truncated"}),
		ek(42, evalLine{Verdict: "accept", Action: "accept", Rule: "on_error", Hook: "input", Length: 20,
			Error: "packet: malformed header"}),
		// IPv6, through a set and a CIDR.
		ek(37, evalLine{Verdict: "accept", Action: "accept", Rule: "six", Hook: "input", State: "new",
			Family: "ipv6", Proto: "udp", Src: "2001:db8:2::5", Sport: 5000, Dst: "2001:db8:1::10", Dport: 9000,
			Length: 49, Offload: true}),
		// pcapng numbering counts the leading ARP frame; audit mode accepts
		// what the default would drop.
		{example("log-only.yaml"), []string{"--hook", "input"}, exampleCapture("log-only.pcapng"), 5,
			tcp4(evalLine{N: 5, Verdict: "accept", Action: "drop", Rule: "default", Hook: "input", State: "new",
				Length: 40, Log: true, Prefix: "default", Audit: true}, "198.51.100.20", 40001, host, 3306)},
		// limit over: true with per: src, from the capture's timestamps.
		{example("ssh-bruteforce.yaml"), []string{"--hook", "input"}, exampleCapture("ssh-bruteforce.pcap"), 13,
			tcp4(evalLine{N: 13, Verdict: "drop", Action: "drop", Rule: "ssh-bruteforce", Hook: "input", State: "new",
				Length: 40, Log: true, Prefix: "ssh-bruteforce"}, "198.51.100.7", 42003, host, 22)},
		// Linux cooked capture.
		{example("dns-blocklist.yaml"), []string{"--hook", "output"}, exampleCapture("dns-blocklist.pcap"), 5,
			evalLine{N: 5, Verdict: "reject", Action: "reject", Rule: "dns-blocked", Hook: "output", State: "established",
				Family: "ipv4", Proto: "udp", Src: "10.0.0.5", Sport: 33003, Dst: "9.9.9.9", Dport: 53, Length: 67, Log: true, Prefix: "dns-blocked"}},
		// iif/oif from the flags on the forward hook.
		{example("router.yaml"), []string{"--hook", "forward", "--iif", "wan0", "--oif", "lan0"}, exampleCapture("router-wan.pcap"), 5,
			tcp4(evalLine{N: 5, Verdict: "drop", Action: "drop", Rule: "spoofed-lan", Hook: "forward", State: "new",
				Length: 40, Log: true, Prefix: "spoofed"}, "192.168.1.20", 50002, "192.168.1.11", 22)},
	}
	outputs := map[string]map[int]evalLine{}
	for _, c := range cases {
		key := strings.Join(append([]string{c.file, c.capture}, c.flags...), " ")
		lines, ok := outputs[key]
		if !ok {
			args := append(append([]string{"eval", "--json", "--policy", c.file}, c.flags...), c.capture)
			code, out, errOut := fwagent(t, args...)
			if code != exitOK {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
			lines = evalLines(t, out)
			outputs[key] = lines
		}
		got := lines[c.n]
		if got.Error == "" && got.Path != "kernel" && got.Path != "queue" {
			t.Errorf("%s packet %d: path %q, want kernel or queue", c.capture, c.n, got.Path)
		}
		got.Path = "" // TestEvalPath checks it
		if got != c.line {
			t.Errorf("%s packet %d:\n got  %+v\n want %+v", c.capture, c.n, got, c.line)
		}
	}
}

func TestEvalText(t *testing.T) {
	code, out, errOut := fwagent(t, "eval", "--policy", example("log-only.yaml"), exampleCapture("log-only.pcapng"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		`2 accept "ssh" tcp 198.51.100.20:40000 -> 192.0.2.10:22`,
		`3 accept "established" tcp 192.0.2.10:22 -> 198.51.100.20:40000`,
		`4 accept "established" tcp 198.51.100.20:40000 -> 192.0.2.10:22`,
		`5 accept "default" tcp 198.51.100.20:40001 -> 192.0.2.10:3306`,
		`6 accept "default" udp 198.51.100.20:5000 -> 192.0.2.10:161`,
		`7 accept "ping" icmp 198.51.100.20 -> 192.0.2.10`,
		`8 accept "web" tcp 198.51.100.20:40002 -> 192.0.2.10:8080`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("got\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}

	code, out, errOut = fwagent(t, "eval", "--summary", "--policy", example("ssh-bruteforce.yaml"), exampleCapture("ssh-bruteforce.pcap"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{`"established"`, `"ssh"`, `"ssh-bruteforce"`} {
		if !strings.Contains(out, w) {
			t.Errorf("summary lacks %s:\n%s", w, out)
		}
	}
	if f := strings.Fields(strings.Split(out, "\n")[2]); len(f) < 4 || f[0] != `"ssh-bruteforce"` || f[1] != "drop" || f[2] != "3" {
		t.Errorf("summary line 3 = %q", f)
	}
}

func TestEvalErrors(t *testing.T) {
	dir := t.TempDir()
	notCapture := writeFile(t, dir, "x.pcap", "this is not a capture")
	pol := example("log-only.yaml")
	cap := exampleCapture("log-only.pcapng")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"eval", cap}, exitUsage, "--policy is required"},
		{[]string{"eval", "--policy", pol}, exitUsage, "want 1 argument"},
		{[]string{"eval", "--policy", pol, "--hook", "prerouting", cap}, exitUsage, `--hook "prerouting"`},
		{[]string{"eval", "--policy", pol, "--bogus", cap}, exitUsage, "unknown flag"},
		{[]string{"eval", "--policy", pol, dir + "/missing.pcap"}, exitFailed, "missing.pcap"},
		{[]string{"eval", "--policy", pol, notCapture}, exitFailed, "x.pcap"},
		{[]string{"eval", "--policy", dir + "/missing.yaml", cap}, exitFailed, "missing.yaml"},
	} {
		code, out, errOut := fwagent(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", c.args, code, out, errOut, c.code, c.msg)
		}
	}
}

// TestEvalCaptureClock: limits run on the capture's timestamps, counted from
// its first packet, even when that packet is at the Unix epoch.
func TestEvalCaptureClock(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "p.yaml", `version: 1
default: {input: drop}
rules:
  - name: ping
    match: {proto: icmp, icmp_type: echo-request}
    limit: {rate: 1/m, burst: 1}
    action: accept
`)
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i, at := range []time.Duration{0, 0, 2 * time.Minute, 2 * time.Minute} {
		p, err := packet.Build(packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoICMP, ICMPType: 8, ICMPID: 1, ICMPSeq: uint16(i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(time.Unix(0, 0).Add(at), p); err != nil {
			t.Fatal(err)
		}
	}
	capFile := writeFile(t, dir, "c.pcap", buf.String())
	code, out, errOut := fwagent(t, "eval", "--json", "--policy", pol, capFile)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := evalLines(t, out)
	// One token a minute: the first of each pair takes it.
	for n, want := range map[int]string{1: "ping", 2: "default", 3: "ping", 4: "default"} {
		if lines[n].Rule != want {
			t.Errorf("packet %d: rule %q, want %q", n, lines[n].Rule, want)
		}
	}
}

// TestEvalGzip: a gzip-compressed capture evaluates exactly like the plain
// one.
func TestEvalGzip(t *testing.T) {
	plain, err := os.ReadFile(exampleCapture("dns-blocklist.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gzFile := writeFile(t, t.TempDir(), "dns.pcap.gz", gz.String())
	args := []string{"eval", "--json", "--hook", "output", "--policy", example("dns-blocklist.yaml")}
	_, want, _ := fwagent(t, append(args, exampleCapture("dns-blocklist.pcap"))...)
	code, got, errOut := fwagent(t, append(args, gzFile)...)
	if code != exitOK || got != want || want == "" {
		t.Errorf("exit %d, stderr %q; gzip output differs:\n%s\nplain:\n%s", code, errOut, got, want)
	}
}

// TestEvalPath: --json says which packets --kernel-rules auto queues: those
// whose first kernel-part match is a rule that needs userspace.
func TestEvalPath(t *testing.T) {
	code, out, errOut := fwagent(t, "eval", "--json", "--policy", example("testdata/every-key.yaml"), exampleCapture("every-key.pcap"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := evalLines(t, out)
	for n, want := range map[int]string{1: "queue", 4: "kernel", 10: "queue"} {
		if got := lines[n]; got.Path != want {
			t.Errorf("packet %d (rule %s): path %q, want %q", n, got.Rule, got.Path, want)
		}
	}
}
