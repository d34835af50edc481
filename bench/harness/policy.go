package harness

import (
	"fmt"
	"strings"
)

// Bench ports: the UDP sink, the UDP echo server, the TCP connect server
// and iperf3. Every policy's last rules accept exactly these.
const (
	portSink  = 9000
	portEcho  = 9001
	portTCP   = 9100
	portBulk  = 5201
	benchUDP  = "9000-9999"
	logGroup  = 100
	ulogGroup = 7
)

const policyHead = `version: 1
mode: enforce
default:
  input: accept
  forward: accept
  output: accept
  log: false
rules:
`

// acceptPolicy accepts the bench traffic. With offload false every packet
// of every flow is queued and decided, which is what a throughput
// measurement of the queue path needs; with offload true a flow is decided
// once and the kernel accepts the rest.
func acceptPolicy(offload bool) string {
	var b strings.Builder
	b.WriteString(policyHead)
	writeBenchRules(&b, offload)
	return b.String()
}

func writeBenchRules(b *strings.Builder, offload bool) {
	fmt.Fprintf(b, `  - name: bench-udp
    hook: input
    match: {proto: udp, dport: %s}
    action: accept
    offload: %t
  - name: bench-tcp
    hook: input
    match: {proto: tcp, dport: [%d, %s]}
    action: accept
    offload: %t
`, benchUDP, offload, portBulk, benchUDP, offload)
}

// bigPolicy is n rules (n >= 2) of which the bench traffic matches only the
// last two, so a rule-by-rule evaluator would walk all of them. The filler
// mixes addresses, ports and protocols so that no single index answers for
// all of it, and none of it matches the bench flows (client 10.237.x.1,
// UDP and TCP ports 9000-9999 and 5201).
func bigPolicy(n int, offload bool) string {
	var b strings.Builder
	b.WriteString(policyHead)
	for i := range n - 2 {
		yaml, _ := fillerRule(i)
		b.WriteString(yaml)
	}
	writeBenchRules(&b, offload)
	return b.String()
}

// bigPolicyNft is bigPolicy(n, false) as an operator would write it in
// nftables: one rule a policy rule, in order, in an input chain. It is
// the kernel-nft-1000 configuration's table.
func bigPolicyNft(n int) string {
	var b strings.Builder
	b.WriteString("table inet fwbench_nft {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n")
	for i := range n - 2 {
		_, nft := fillerRule(i)
		fmt.Fprintf(&b, "\t\t%s\n", nft)
	}
	fmt.Fprintf(&b, "\t\tudp dport %s accept\n\t\ttcp dport { %d, %s } accept\n\t}\n}\n", benchUDP, portBulk, benchUDP)
	return b.String()
}

// fillerRule is bigPolicy's rule i, in the policy's YAML and as an nft
// rule that decides the same.
func fillerRule(i int) (yaml, nft string) {
	switch i % 5 {
	case 0:
		return fmt.Sprintf("  - name: ssh-from-%d\n    match: {proto: tcp, src: 172.16.%d.%d, dport: 22}\n    action: drop\n", i, i/256, i%256),
			fmt.Sprintf("ip saddr 172.16.%d.%d tcp dport 22 drop", i/256, i%256)
	case 1:
		return fmt.Sprintf("  - name: udp-port-%d\n    match: {proto: udp, dport: %d}\n    action: drop\n    log: true\n", i, 10000+i),
			fmt.Sprintf("udp dport %d log group %d drop", 10000+i, logGroup)
	case 2:
		return fmt.Sprintf("  - name: block-net-%d\n    match: {src: 198.18.%d.0/24}\n    action: drop\n", i, i%256),
			fmt.Sprintf("ip saddr 198.18.%d.0/24 drop", i%256)
	case 3:
		return fmt.Sprintf("  - name: web-from-%d\n    match: {proto: tcp, src: 192.0.%d.0/24, dport: [80, 443, %d]}\n    action: accept\n", i, i%256, 20000+i),
			fmt.Sprintf("ip saddr 192.0.%d.0/24 tcp dport { 80, 443, %d } accept", i%256, 20000+i)
	default:
		return fmt.Sprintf("  - name: v6-%d\n    match: {src: \"2001:db8:%x::/48\", proto: udp, sport: %d-%d}\n    action: drop\n", i, i, 1000+i, 1001+i),
			fmt.Sprintf("ip6 saddr 2001:db8:%x::/48 udp sport %d-%d drop", i, 1000+i, 1001+i)
	}
}

// dropLogPolicy drops and logs every bench UDP packet: the drop-log
// throughput configuration.
func dropLogPolicy() string {
	return policyHead + fmt.Sprintf(`  - name: bench-drop
    hook: input
    match: {proto: udp, dport: %s}
    action: drop
    log: true
`, benchUDP)
}

// mixedPolicy is bigPolicy with one L7 rule in front: a tls_sni rule on TCP
// 443, which the bench traffic never touches. With --kernel-rules auto only
// packets to TCP 443 are queued.
func mixedPolicy() string {
	big := bigPolicy(1000, false)
	l7 := "  - name: tls-deny\n    match: {proto: tcp, dport: 443, tls_sni: [\"*.ads.example\"]}\n    action: reject\n"
	return strings.Replace(big, "rules:\n", "rules:\n"+l7, 1)
}

// payloadPolicy is acceptPolicy behind a payload rule on the bulk port
// whose needle the stream never carries: every packet is copied whole and
// searched to its end, and then accepted.
func payloadPolicy() string {
	return policyHead + fmt.Sprintf(`  - name: bench-payload
    hook: input
    match: {proto: tcp, dport: %d, payload: {contains: "fwagent-bench-needle"}}
    action: drop
`, portBulk) + acceptPolicy(false)[len(policyHead):]
}
