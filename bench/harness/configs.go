package harness

import "fmt"

// Handler kinds.
const (
	kindKernel    = "kernel"
	kindKernelCT  = "kernel-ct"
	kindKernelNft = "kernel-nft"
	// kindKernelNft1000 is bigPolicy written by hand as nft rules.
	kindKernelNft1000 = "kernel-nft-1000"
	kindNaive         = "naive"
	kindCLoop         = "cloop"
	kindFwagent       = "fwagent"
	kindUlogd         = "ulogd2"
)

// config is one firewall configuration and the traffic it gets.
type config struct {
	name, desc string
	kind       string
	queues     int
	policy     string // fwagent only
	udp        bool   // UDP max, 80%, 50% with latency, fixed rates
	connect    bool   // TCP connection setup rate
	bulk       bool   // TCP bulk stream
	dropLog    bool   // every packet dropped with logging
	// args are extra `fwagent run` arguments; each flag among them must be
	// in `fwagent run --help`, or the configuration is skipped.
	args []string
}

func configNames() []string {
	return []string{"kernel", "kernel-ct", "kernel-nft", "kernel-nft-1000", "naive", "cloop", "fwagent-1q", "fwagent-nq", "fwagent-1000", "fwagent-offload",
		"fwagent-inspect", "fwagent-inspect-nq", "fwagent-inspect-payload", "fwagent-inspect-nogso",
		"fwagent-2-kernel", "fwagent-1000-kernel", "fwagent-mixed-kernel", "droplog-fwagent", "droplog-fwagent-queue", "droplog-ulogd2"}
}

// queuePath pins an fwagent configuration to the queue path: these
// configurations measure verdict throughput through NFQUEUE, which
// --kernel-rules auto (the default) would bypass for their policies.
func queuePath(c config) config {
	if c.kind == kindFwagent {
		c.args = append([]string{"--kernel-rules", "off"}, c.args...)
	}
	return c
}

func configByName(name string, o Options) config {
	switch name {
	case "fwagent-1000-kernel":
		return config{name: name, kind: kindFwagent, queues: 1, policy: bigPolicy(1000, false), args: []string{"--kernel-rules", "auto"},
			desc: "as fwagent-1000, compiled into the kernel (--kernel-rules auto): nothing is queued", udp: true, connect: true}
	case "droplog-fwagent":
		// The agent's default: the drop-and-log rule compiles to nft, so the
		// kernel logs each drop to NFLOG itself.
		return config{name: name, kind: kindFwagent, queues: 1, policy: dropLogPolicy(), args: []string{"--kernel-rules", "auto"},
			desc: "fwagent, every packet dropped with log by the compiled kernel rule (--kernel-rules auto), JSON events to a file", dropLog: true}
	case "droplog-fwagent-queue":
		return queuePath(config{name: name, kind: kindFwagent, queues: 1, policy: dropLogPolicy(),
			desc: "as droplog-fwagent through the queue (--kernel-rules off): each drop is decided in userspace, then logged by the kernel", dropLog: true})
	case "fwagent-2-kernel":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(false), args: []string{"--kernel-rules", "auto"},
			desc: "the 2-rule policy compiled into the kernel (--kernel-rules auto): the table's fixed cost (conntrack, marks), the floor under fwagent-1000-kernel", udp: true}
	case "fwagent-mixed-kernel":
		return config{name: name, kind: kindFwagent, queues: 1, policy: mixedPolicy(), args: []string{"--kernel-rules", "auto"},
			desc: "the 1,000-rule policy plus one tls_sni rule on TCP 443, --kernel-rules auto: the UDP flood to the bench ports is not queued", udp: true}
	}
	return queuePath(configByNameQueued(name, o))
}

func configByNameQueued(name string, o Options) config {
	switch name {
	case "kernel":
		return config{name: name, kind: kindKernel, desc: "kernel only, no queue", udp: true, connect: true, bulk: true}
	case "kernel-ct":
		return config{name: name, kind: kindKernelCT, desc: "kernel only with connection tracking on (nft: ct state established accept), no queue: the floor under any stateful path", udp: true, connect: true, bulk: true}
	case "kernel-nft":
		return config{name: name, kind: kindKernelNft, desc: "kernel only with one hand-written nft rule accepting the bench UDP ports, no queue: the floor under any nftables firewall", udp: true}
	case "kernel-nft-1000":
		return config{name: name, kind: kindKernelNft1000, desc: "kernel only with the 1,000-rule policy written as one nft rule a policy rule (what fwagent-1000-kernel compiles, as an operator would write it), no queue", udp: true}
	case "naive":
		return config{name: name, kind: kindNaive, queues: 1, desc: "go-nfqueue README loop (SetVerdict in the hook)", udp: true, connect: true}
	case "cloop":
		return config{name: name, kind: kindCLoop, queues: 1, desc: "C libnetfilter_queue accept loop, one verdict per packet (whole copies, no GSO)", udp: true, connect: true, bulk: true}
	case "fwagent-1q":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(false), desc: "fwagent, 1 queue, 2-rule policy, offload off", udp: true, connect: true}
	case "fwagent-nq":
		return config{name: name, kind: kindFwagent, queues: o.queues, policy: acceptPolicy(false), desc: fmt.Sprintf("fwagent, %d queues (fan-out), 2-rule policy, offload off", o.queues), udp: true, connect: true}
	case "fwagent-1000":
		return config{name: name, kind: kindFwagent, queues: 1, policy: bigPolicy(1000, false), desc: "fwagent, 1 queue, 1,000-rule policy (match last), flow tracking, offload off", udp: true, connect: true}
	case "fwagent-offload":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(true), desc: "fwagent, 1 queue, offload on (flows accepted in the kernel after the first packet)", connect: true, bulk: true}
	case "fwagent-inspect":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(false),
			desc: "fwagent, 1 queue, TCP bulk stream decided packet by packet (offload: false), headers-only copy range, GSO", bulk: true}
	case "fwagent-inspect-nq":
		return config{name: name, kind: kindFwagent, queues: o.queues, policy: acceptPolicy(false),
			desc: fmt.Sprintf("as fwagent-inspect with %d queues (fan-out)", o.queues), bulk: true}
	case "fwagent-inspect-payload":
		return config{name: name, kind: kindFwagent, queues: 1, policy: payloadPolicy(),
			desc: "as fwagent-inspect with a payload rule (no depth: whole packets copied and searched) before the accept", bulk: true}
	case "fwagent-inspect-nogso":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(false), args: []string{"--queue-gso=false", "--copy-range", "65535"},
			desc: "as fwagent-inspect without GSO and with whole copies: the queue path before #18", bulk: true}
	case "droplog-ulogd2":
		return config{name: name, kind: kindUlogd, desc: "ulogd2: nft log group + drop, NFLOG -> JSON file", dropLog: true}
	}
	panic("bench: unknown configuration " + name)
}
