// Package policygen writes large, realistic policies for benchmarks and
// tests: tenants' CIDR lists, port lists and ranges over mixed protocols,
// named sets, and one final rule that the benchmark traffic matches, so a
// linear scan would pay for every rule before it.
package policygen

import (
	"fmt"
	"strings"
)

// Options shape a generated policy.
type Options struct {
	// Rules is the total number of rules, including the head and the last.
	Rules int
	// Mode is "enforce" (default) or "audit".
	Mode string
	// Last is the final rule's YAML flow mapping, without name, e.g.
	// `{match: {proto: udp, dst: 10.0.0.2, dport: 9000}, action: accept}`.
	// Default: TCP from 100.64.7.0/24 to 100.100.0.0/16 ports 7777, 9000-9100.
	Last string
	// Stateful puts an `established` accept rule first, as real policies do;
	// a benchmark of per-packet decisions leaves it out.
	Stateful bool
}

// DefaultLast is the final rule when Options.Last is empty.
const DefaultLast = `{match: {proto: tcp, src: 100.64.7.0/24, dst: 100.100.0.0/16, dport: [7777, 9000-9100]}, action: accept}`

// Generate returns the policy's YAML text. The last rule is named "last".
func Generate(o Options) string {
	if o.Mode == "" {
		o.Mode = "enforce"
	}
	if o.Last == "" {
		o.Last = DefaultLast
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nmode: %s\n", o.Mode)
	b.WriteString("default: {input: drop, forward: drop, output: accept, log: true}\nsets:\n")
	b.WriteString("  admins: [172.16.0.0/12, 192.168.0.0/16, \"2001:db8:a::/48\"]\n")
	b.WriteString("  web: [80, 443, 8000-8099]\n")
	b.WriteString("  bogons: [0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4]\n")
	b.WriteString("rules:\n")
	head := 1
	if o.Stateful {
		b.WriteString("  - {name: established, match: {state: [established, related]}, action: accept}\n")
		head++
	}
	b.WriteString("  - {name: bogons, match: {src: $bogons}, action: drop, log: true}\n")
	protos := []string{"tcp", "udp", "tcp", "[tcp, udp]"}
	actions := []string{"accept", "drop", "reject"}
	for i := head; i < o.Rules-1; i++ {
		x, y := (i/250)%250, i%250
		switch i % 10 {
		case 7:
			fmt.Fprintf(&b, "  - {name: r%d, match: {proto: icmp, src: 10.%d.%d.0/24, icmp_type: echo-request}, action: accept}\n", i, x, y)
		case 8:
			fmt.Fprintf(&b, "  - {name: r%d, hook: input, match: {proto: tcp, src: [$admins, 10.%d.%d.0/24], dport: $web}, action: accept}\n", i, x, y)
		case 9:
			fmt.Fprintf(&b, "  - {name: r%d, match: {proto: udp, dst: \"2001:db8:%x:%x::/64\", dport: %d}, action: drop}\n", i, x, y, 1024+i%60000)
		default:
			fmt.Fprintf(&b, "  - {name: r%d, match: {proto: %s, src: [10.%d.%d.0/24, 10.%d.%d.128/25], dport: [%d, %d-%d]}, action: %s}\n",
				i, protos[i%4], x, y, (x+1)%250, y, 1024+i%60000, 2000+i%50000, 2010+i%50000, actions[i%3])
		}
	}
	last := strings.TrimSpace(o.Last)
	last = "{name: last, " + strings.TrimPrefix(last, "{")
	fmt.Fprintf(&b, "  - %s\n", last)
	return b.String()
}
