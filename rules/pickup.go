package rules

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// RulePickup names the start-up pickup rule (see pickupRules).
const RulePickup = "pickup"

// TCP header flag bits (RFC 9293 section 3.1) and where they sit.
const (
	tcpFlagsOffset = 13
	tcpFlagSYN     = 0x02
	tcpFlagACK     = 0x10
)

// pickupRules is the start-up pickup rule, or nothing once the window is
// over (Config.Pickup false):
//
//	ct state new meta l4proto tcp tcp flags & (syn | ack) == ack -> meta mark |= EstablishedBit
//
// Conntrack starts only when a table first needs it, so on a host that had
// no firewall the kernel has never seen the connections that are older
// than the agent. Their next packet is `ct state new` (loose pickup), a
// policy that accepts only established traffic drops it, the entry is
// never confirmed and every retransmit is new again: the admin's own SSH
// session dies. A mid-stream TCP packet (ACK without SYN) that the kernel
// sees as new is, at start, almost surely such a connection, so for the
// pickup window it counts as established, exactly as conntrack's loose
// pickup itself treats it. The rule sets the same mark bit as the
// established rule, which is the one source of `state` for userspace and
// for kernel-compiled rules alike. It sits before the established rule and
// everything that decides, and EndPickup deletes it in one transaction.
//
// The price: during the window a forged ACK-only packet of a flow nobody
// has seen also counts as established (see docs/policy.md).
func pickupRules(cfg Config) []rule {
	if !cfg.Pickup {
		return nil
	}
	est := cfg.Marks.EstablishedBit()
	return []rule{{RulePickup, []stmt{
		ctState{bit: expr.CtStateBitNEW, name: "new"},
		l4proto(unix.IPPROTO_TCP),
		tcpFlagsMasked{mask: tcpFlagSYN | tcpFlagACK, value: tcpFlagACK},
		markSet{keep: ^est, set: est},
	}}}
}

// tcpFlagsMasked is `tcp flags & mask == value`; it must follow
// l4proto(TCP).
type tcpFlagsMasked struct{ mask, value uint8 }

func (s tcpFlagsMasked) exprs() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: tcpFlagsOffset, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{s.mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{s.value}},
	}
}

func (s tcpFlagsMasked) text() string {
	return fmt.Sprintf("tcp flags & (%s) == %s", tcpFlagNames(s.mask, " | "), tcpFlagNames(s.value, "|"))
}

func tcpFlagNames(bits uint8, sep string) string {
	out := ""
	for _, f := range []struct {
		bit  uint8
		name string
	}{{0x01, "fin"}, {tcpFlagSYN, "syn"}, {0x04, "rst"}, {0x08, "psh"}, {tcpFlagACK, "ack"}, {0x20, "urg"}} {
		if bits&f.bit != 0 {
			if out != "" {
				out += sep
			}
			out += f.name
		}
	}
	return out
}

// Pickup reports whether the pickup rule is installed.
func (t *Table) Pickup() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg.Pickup
}

// EndPickup deletes the pickup rule from every chain in one transaction,
// ending the start-up pickup window; it is a no-op when there is none.
// Connections the window let through are confirmed in the kernel's
// conntrack by then and stay established on their own.
func (t *Table) EndPickup() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.cfg.Pickup {
		return nil
	}
	if t.cfg.stateless() {
		// No pickup rule: nothing reads state.
		t.cfg.Pickup = false
		return nil
	}
	for _, ic := range t.chains {
		h := ic.handles[RulePickup]
		if h == 0 {
			return fmt.Errorf("rules: end pickup: chain %s has no %s rule", ic.chain.Name, RulePickup)
		}
		if err := t.conn.DelRule(&nftables.Rule{Table: t.table, Chain: ic.chain, Handle: h}); err != nil {
			return fmt.Errorf("rules: end pickup: delete rule in chain %s: %w", ic.chain.Name, err)
		}
	}
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("rules: end pickup: %w", err)
	}
	t.cfg.Pickup = false
	for i := range t.chains {
		delete(t.chains[i].handles, RulePickup)
	}
	return nil
}
