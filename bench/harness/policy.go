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
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "  - name: ssh-from-%d\n    match: {proto: tcp, src: 172.16.%d.%d, dport: 22}\n    action: drop\n", i, i/256, i%256)
		case 1:
			fmt.Fprintf(&b, "  - name: udp-port-%d\n    match: {proto: udp, dport: %d}\n    action: drop\n    log: true\n", i, 10000+i)
		case 2:
			fmt.Fprintf(&b, "  - name: block-net-%d\n    match: {src: 198.18.%d.0/24}\n    action: drop\n", i, i%256)
		case 3:
			fmt.Fprintf(&b, "  - name: web-from-%d\n    match: {proto: tcp, src: 192.0.%d.0/24, dport: [80, 443, %d]}\n    action: accept\n", i, i%256, 20000+i)
		case 4:
			fmt.Fprintf(&b, "  - name: v6-%d\n    match: {src: \"2001:db8:%x::/48\", proto: udp, sport: %d-%d}\n    action: drop\n", i, i, 1000+i, 1001+i)
		}
	}
	writeBenchRules(&b, offload)
	return b.String()
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
