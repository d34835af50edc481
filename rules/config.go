package rules

import (
	"fmt"

	"github.com/fwagent/fwagent/internal/nf"
)

// TableName is the name of the one nftables table the agent owns, in the inet
// family. Nothing in this package reads or writes any other table.
const TableName = "fwagent"

// QueueKind says how the queue rule hands packets to userspace.
type QueueKind int

const (
	// QueueAuto lets Install probe the kernel (see Probe). Render shows it as
	// QueueNative, the only kind nft syntax can express.
	QueueAuto QueueKind = iota
	// QueueNative is the nft `queue` expression (CONFIG_NFT_QUEUE).
	QueueNative
	// QueueXT is the iptables NFQUEUE target (revision 3) run through
	// nft_compat, for kernels built without the native expression.
	QueueXT
)

func (k QueueKind) String() string {
	switch k {
	case QueueAuto:
		return "auto"
	case QueueNative:
		return "native"
	case QueueXT:
		return "xt"
	}
	return fmt.Sprintf("QueueKind(%d)", int(k))
}

// Config describes the table to build. DefaultConfig gives the documented
// defaults; the CLI flags named below override them.
type Config struct {
	// Hooks are the base chains to create, one per hook (--hooks, default
	// input). Each chain is named after its hook.
	Hooks []nf.Hook
	// Priority of every base chain (--priority, default 0, the filter
	// priority). Lower runs earlier than other tables' chains on the same hook.
	Priority int32
	// QueueBase and Queues select queue numbers QueueBase..QueueBase+Queues-1
	// (--queue-base, --queues; default 0 and 1). Queues 0 means 1.
	QueueBase, Queues uint16
	// Bypass is fail-open (--fail-open, default true): while no agent listens
	// on a queue, the kernel accepts its packets instead of dropping them.
	Bypass bool
	// CPUFanout spreads packets over the queues by CPU instead of by flow
	// hash; only meaningful when Queues > 1.
	CPUFanout bool
	// LogGroup is the NFLOG group the log rules send to (--log-group,
	// default 100).
	LogGroup uint16
	// Marks is the packet and conntrack mark layout shared with verdict/.
	Marks nf.Marks
	// Generation is the policy generation baked into the offload rules
	// (taken modulo Marks.MaxGen()+1).
	Generation uint32
	// AcceptLoopback accepts loopback traffic in the kernel (input: iif lo,
	// output: oif lo), so no policy can cut the host off its own services.
	AcceptLoopback bool
	// AcceptICMPv6ND accepts ICMPv6 router and neighbour discovery (types
	// 133-137) in the kernel, so no policy breaks IPv6 address resolution.
	AcceptICMPv6ND bool
	// QueueKind selects the queue rule; QueueAuto probes at Install.
	QueueKind QueueKind
	// Pickup installs the start-up pickup rule (see pickupRules), which
	// Table.EndPickup removes when the agent's --pickup-window ends.
	Pickup bool
	// Plan is the policy compiled for the kernel (--kernel-rules auto):
	// each base chain then ends with a jump to its policy chain, which
	// decides what nftables can express and queues the rest. nil
	// (--kernel-rules off) queues every packet that reaches the end of the
	// base chain. Compile it with the same Marks and LogGroup.
	Plan *Plan
	// QueueAll (--kernel-rules off, with a Plan) still queues every packet
	// the kernel can queue; the Plan decides only those it cannot: packets
	// related to a connection not yet confirmed, above all the TCP reset
	// or ICMP error the kernel sends for a packet it is rejecting right
	// now. NFQUEUE drops a packet whose unconfirmed conntrack entry another
	// packet holds, so queued, such a reply would never leave.
	QueueAll bool
}

// DefaultConfig returns the documented defaults: input hook, priority 0, one
// queue (0), fail-open, log group 100, the default mark mask, host essentials
// on, queue kind probed at install.
func DefaultConfig() Config {
	m, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		// DefaultMarkMask is a constant that NewMarks accepts; a failure here
		// is a programming error in this package.
		panic(err)
	}
	return Config{
		Hooks:          []nf.Hook{nf.HookInput},
		Queues:         1,
		Bypass:         true,
		LogGroup:       100,
		Marks:          m,
		AcceptLoopback: true,
		AcceptICMPv6ND: true,
	}
}

// Validate reports a configuration Install and Render cannot build.
func (c Config) Validate() error {
	if len(c.Hooks) == 0 {
		return fmt.Errorf("rules: no hooks configured")
	}
	var seen [nf.NumHooks]bool
	for _, h := range c.Hooks {
		if h >= nf.NumHooks {
			return fmt.Errorf("rules: unknown hook %d", h)
		}
		if seen[h] {
			return fmt.Errorf("rules: hook %s configured twice", h)
		}
		seen[h] = true
	}
	if !c.Marks.Valid() {
		return fmt.Errorf("rules: mark layout not set (use nf.NewMarks)")
	}
	if last := uint32(c.QueueBase) + uint32(c.queues()) - 1; last > 0xffff {
		return fmt.Errorf("rules: queues %d-%d exceed the largest queue number 65535", c.QueueBase, last)
	}
	switch c.QueueKind {
	case QueueAuto, QueueNative, QueueXT:
	default:
		return fmt.Errorf("rules: unknown queue kind %d", int(c.QueueKind))
	}
	return nil
}

func (c Config) queues() uint16 {
	if c.Queues == 0 {
		return 1
	}
	return c.Queues
}

// generation is the generation as the marks carry it.
func (c Config) generation() uint32 { return c.Generation & c.Marks.MaxGen() }
