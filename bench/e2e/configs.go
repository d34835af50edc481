package main

import "fmt"

// Handler kinds.
const (
	kindKernel   = "kernel"
	kindKernelCT = "kernel-ct"
	kindNaive    = "naive"
	kindCLoop    = "cloop"
	kindFwagent  = "fwagent"
	kindUlogd    = "ulogd2"
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
	return []string{"kernel", "kernel-ct", "naive", "cloop", "fwagent-1q", "fwagent-nq", "fwagent-1000", "fwagent-1000-nfqueue", "fwagent-offload",
		"fwagent-2-kernel", "fwagent-1000-kernel", "fwagent-mixed-kernel", "droplog-fwagent", "droplog-ulogd2"}
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

func configByName(name string, o options) config {
	switch name {
	case "fwagent-1000-kernel":
		return config{name: name, kind: kindFwagent, queues: 1, policy: bigPolicy(1000, false), args: []string{"--kernel-rules", "auto"},
			desc: "as fwagent-1000, compiled into the kernel (--kernel-rules auto): nothing is queued", udp: true, connect: true}
	case "fwagent-2-kernel":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(false), args: []string{"--kernel-rules", "auto"},
			desc: "the 2-rule policy compiled into the kernel (--kernel-rules auto): the table's fixed cost (conntrack, marks), the floor under fwagent-1000-kernel", udp: true}
	case "fwagent-mixed-kernel":
		return config{name: name, kind: kindFwagent, queues: 1, policy: mixedPolicy(), args: []string{"--kernel-rules", "auto"},
			desc: "the 1,000-rule policy plus one tls_sni rule on TCP 443, --kernel-rules auto: the UDP flood to the bench ports is not queued", udp: true}
	}
	return queuePath(configByNameQueued(name, o))
}

func configByNameQueued(name string, o options) config {
	switch name {
	case "kernel":
		return config{name: name, kind: kindKernel, desc: "kernel only, no queue", udp: true, connect: true, bulk: true}
	case "kernel-ct":
		return config{name: name, kind: kindKernelCT, desc: "kernel only with connection tracking on (nft: ct state established accept), no queue: the floor under any stateful path", udp: true, connect: true, bulk: true}
	case "naive":
		return config{name: name, kind: kindNaive, queues: 1, desc: "go-nfqueue README loop (SetVerdict in the hook)", udp: true, connect: true}
	case "cloop":
		return config{name: name, kind: kindCLoop, queues: 1, desc: "C libnetfilter_queue accept loop, one verdict per packet", udp: true, connect: true}
	case "fwagent-1q":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(false), desc: "fwagent, 1 queue, 2-rule policy, offload off", udp: true, connect: true}
	case "fwagent-nq":
		return config{name: name, kind: kindFwagent, queues: o.queues, policy: acceptPolicy(false), desc: fmt.Sprintf("fwagent, %d queues (fan-out), 2-rule policy, offload off", o.queues), udp: true, connect: true}
	case "fwagent-1000":
		return config{name: name, kind: kindFwagent, queues: 1, policy: bigPolicy(1000, false), desc: "fwagent, 1 queue, 1,000-rule policy (match last), flow tracking, offload off", udp: true, connect: true}
	case "fwagent-1000-nfqueue":
		return config{name: name, kind: kindFwagent, queues: 1, policy: bigPolicy(1000, false), args: []string{"--reader", "nfqueue"},
			desc: "as fwagent-1000, with go-nfqueue's own reader (--reader nfqueue) instead of the batched one", udp: true}
	case "fwagent-offload":
		return config{name: name, kind: kindFwagent, queues: 1, policy: acceptPolicy(true), desc: "fwagent, 1 queue, offload on (flows accepted in the kernel after the first packet)", connect: true, bulk: true}
	case "droplog-fwagent":
		return config{name: name, kind: kindFwagent, queues: 1, policy: dropLogPolicy(), desc: "fwagent, every packet dropped with log, JSON events to a file", dropLog: true}
	case "droplog-ulogd2":
		return config{name: name, kind: kindUlogd, desc: "ulogd2: nft log group + drop, NFLOG -> JSON file", dropLog: true}
	}
	panic("e2e: unknown configuration " + name)
}
