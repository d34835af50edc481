// Package rules owns the agent's nftables table, `inet fwagent`: it builds it,
// installs it in one atomic netlink transaction, rewrites its offload rules in
// place, removes it, renders it in nft syntax, and probes which queue rule the
// kernel supports.
//
// # What the agent owns
//
// Exactly one table: `inet fwagent`. Install, SetGeneration, Remove,
// RemoveStale and Probe only ever name that table (family inet); a table
// called fwagent in another family, and every other table, are left alone.
// Install replaces a table left behind by a crashed agent in the same
// transaction that builds the new one. The table holds one base chain per
// configured hook (input, forward, output), named after the hook, type
// filter, at the configured priority, policy accept.
//
// # The chain
//
// Every base chain holds these rules, in this order. Each carries its name as
// its nft comment. h is the chain's hook; "direction" is the kernel
// conntrack's (original or reply).
//
//  1. offload, offload-reply: ct mark has the offload bit of (h, direction)
//     and the current generation, ct direction matches, ct state new or
//     established -> accept. First, because offloaded flows are most of the
//     packets on a busy host; related packets (ICMP errors carrying the
//     flow they quote) are left to the policy.
//  2. offload-stale: ct mark has offload bits of another generation -> clear
//     the agent's conntrack mark bits (and continue)
//  3. droplog:       mark action DropLog    -> log group G prefix "fwagent:drop", drop
//  4. reject-tcp:    mark action Reject, TCP -> reject with tcp reset
//     reject:        mark action Reject     -> reject with icmpx port-unreachable
//  5. rejectlog-tcp, rejectlog: the same for RejectLog, logging "fwagent:reject" first
//  6. acceptlog, would_drop, would_reject: mark action AcceptLog, WouldDrop,
//     WouldReject -> log "fwagent:accept", "fwagent:would_drop",
//     "fwagent:would_reject", clear the agent's mark bits, accept
//  7. offload-set, offload-set-reply: mark action Offload with the current
//     generation, ct direction -> set the offload bit of (h, direction) and
//     the generation in the ct mark, clear the agent's mark bits, accept
//  8. looped: any other action -> clear the agent's mark bits, accept (an
//     offload request from before a reload, or for a packet without
//     conntrack: the agent accepted it)
//  9. host essentials (see below)
//  10. pickup (only during the agent's start-up pickup window): ct state
//     new, TCP with ACK and without SYN -> meta mark |= EstablishedBit
//  11. established, related, invalid: ct state X -> meta mark |= the
//     state's bit (Marks.EstablishedBit, RelatedBit, InvalidBit)
//  12. queue:        queue to B..B+N-1 [fanout] [bypass]
//
// With a Plan (--kernel-rules auto) rule 12 is instead `policy`, the jump to
// the hook's policy chain (the policy compiled; see compile.go). With
// QueueAll (--kernel-rules off) both stand: `policy` takes only packets
// related to a connection not yet confirmed (ct state related, ct status
// ! confirmed), which NFQUEUE would drop, such as the reset or ICMP error
// the kernel sends for a packet it is rejecting; queue takes the rest.
//
// Rules 3-8 only match packets the agent sent back with NF_REPEAT and a mark
// (verdict/ does that): the kernel then logs through NFLOG group G and drops,
// rejects or accepts, so every logged verdict reaches internal/droplog the
// same way, with the deciding rule's ID in the mark (NFLOG reports the mark).
// Accepting rules clear the agent's mark bits first, so a packet that is
// accepted and then meets another fwagent hook (output, then input over
// loopback) is queued there instead of being taken for a repeated one.
//
// Offload: NFQUEUE cannot set a conntrack mark on this kernel (no conntrack
// glue), so to offload a flow the agent answers NF_REPEAT with the Offload
// action and the policy generation in the packet mark; rule 7 sets the bit
// of this hook and direction in the conntrack mark and rule 1 accepts the
// rest of the flow at this hook in this direction, never queueing it again.
// A decision at one hook or direction never offloads another: each has its
// own bit. On reload SetGeneration rewrites rules 1, 2 and 7 by handle:
// flows offloaded under an older generation stop matching and are queued and
// decided again. Base chains are never deleted or recreated after Install,
// because that drops every packet waiting in the queues.
//
// Rule 10 tells the agent the kernel's conntrack state of every queued
// packet, which is the policy's `state` (so flows that began before the
// agent started are seen as the kernel sees them).
//
// # Mark bits
//
// The agent owns the bits of Marks.Mask (default 0xffff0000, clear of
// kube-proxy's 0x4000/0x8000 and Cilium's 0x0f00 range) in both the packet
// mark and the conntrack mark; see nf.Marks for the layout: in the packet
// mark an action code in the low 3 bits of the field, then either the
// state bits (no action) or an ID (rule log ID or policy generation); in the
// conntrack mark six offload bits (hook x direction) and the generation.
// Bits outside the mask are never changed. Anything else on the host that
// sets bits inside the mask makes the kernel rules misread packets: choose a
// mask (--mark-mask) nothing else uses.
//
// # Host essentials
//
// On by default, each behind a Config flag, accepted in the kernel before
// the queue so that no policy, and no agent outage, can cut the host off:
//   - loopback: `iif lo accept` in the input chain, `oif lo accept` in the
//     output chain (none in forward);
//   - ICMPv6 router and neighbour discovery, types 133-137 (RFC 4861), in
//     every chain, without which IPv6 stops resolving neighbours.
//
// # Failure semantics: bypass (fail-open)
//
// With Config.Bypass (the default, --fail-open) the queue rule carries the
// bypass flag: while no process is bound to a queue (the agent is not
// running, crashed, or is restarting) the kernel accepts packets instead of
// dropping them. The table outlives the agent's process, so after a crash
// the host keeps its connectivity but is unfiltered, and Install replaces
// the leftover table on the next start. Bypass does not cover a full queue
// while the agent is bound: that is the queue's fail-open flag, set by
// verdict/ when it opens the queue. Without Bypass the host fails closed:
// every packet that reaches the queue rule is dropped while no agent listens.
// Packets the kernel rules decide (host essentials, offloaded flows, rules
// 1-8) never depend on the agent.
//
// # When something else changes the table
//
// The kernel does not stop other programs from editing or deleting the
// agent's table: `nft flush ruleset` (run by a restart of the host's
// nftables service) deletes it, and then nothing is queued and the host is
// unfiltered. Table.Verify detects this (ErrTableChanged) and
// Table.Reinstall rebuilds the table with the current generation;
// Table.Guard does both on a ticker and is meant to run for the agent's
// lifetime.
//
// # Queue kind
//
// Probe checks whether the kernel has the native nft `queue` expression; if
// not (CONFIG_NFT_QUEUE unset, as on the development machines) the table
// uses the xt NFQUEUE target, revision 3, through nft_compat. Both behave the
// same. Render writes the native statement; nft syntax cannot express the xt
// target, so with QueueXT Render leaves the queue rule as a comment.
package rules
