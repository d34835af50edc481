// Package conntrack tracks flows in userspace: it tells, for each packet, whether
// it starts a flow, belongs to one, relates to one, or fits none (the policy's
// `state` match), and keeps the decision made for a flow so later packets can
// reuse it.
//
// # Flows and keys
//
// A flow is keyed by a canonical bidirectional tuple: family, protocol and
// the two endpoints (address, port) ordered so that both directions build the
// same key. ICMP echo flows are keyed by requester, responder and echo
// identifier. Protocols without ports the decoder understands (GRE, ESP, ...)
// are keyed by addresses and protocol alone. The originator is the sender of
// the first packet the table saw; Result.Reply marks packets going the other
// way.
//
// # States reported
//
// As in the kernel, New and Established describe the flow, not the TCP
// state: a packet is New while its flow has seen packets in one direction
// only, Established once a reply was seen. Invalid means no state allows the
// packet; Related marks an ICMP error quoting a live flow.
//
//   - TCP: a SYN starts a flow; the machine follows SYN, SYN-ACK (or a SYN from
//     each side: simultaneous open), the handshake ACK, FINs in each direction
//     and their acknowledgements (checked against sequence numbers, so data
//     reordered behind a FIN still passes and a stale ACK does not close a
//     direction), TIME_WAIT once both FINs are acknowledged, CLOSE after a RST.
//     Invalid: flag combinations no stack sends (SYN+FIN, SYN+RST, FIN without
//     ACK, no flags), any first packet other than a SYN, an ACK or FIN before
//     the SYN-ACK, a SYN-ACK from the originator, a bare SYN from the responder
//     after the handshake began. A SYN on a flow in TIME_WAIT or CLOSE starts a
//     new connection on the same tuple (new handle, no cached decision).
//     Sequence windows are not tracked (the kernel does that before queueing).
//   - UDP and other protocols: new until a reply is seen, then established.
//   - ICMP/ICMPv6 echo: a request starts a flow, its reply establishes it; a
//     reply without a request is invalid.
//   - ICMP/ICMPv6 errors (unreachable, too big, time exceeded, parameter
//     problem, redirect, source quench) are related if the flow they quote is
//     tracked and live, invalid otherwise. They never create or refresh flows.
//   - Other ICMP messages (neighbour discovery, router advertisements, MLD,
//     timestamps) belong to no flow: New every time, not tracked. The kernel
//     reports neighbour discovery as untracked, which the State enum lacks.
//   - Untrackable packets (non-first fragments, a TCP, UDP, SCTP or ICMP
//     packet whose header did not decode, unknown family) are Invalid. With
//     kernel conntrack loaded, fragments are reassembled before the queue, so
//     these are rare.
//
// # Pickup after restart
//
// Flows older than the agent must not be cut. A kernel rule before the queue
// rule sets the established bit of the packet mark (rules.Marks.EstablishedBit)
// for packets the kernel's conntrack sees as established; the caller passes
// it to Track as kernelEstablished. A packet with the hint and no flow creates
// its flow directly as established, whatever its TCP flags (a FIN starts it
// closing); a RST with the hint passes as established without creating a
// flow. The originator of a picked-up flow is the sender of the first packet
// seen, which may be the responder. The hint on a later packet of a flow
// the table tracks makes it established too: when only input is filtered,
// the replies that establish an inbound UDP or ICMP flow leave by output and
// the table never sees them. When a packet with the hint fails the
// state machine of an existing flow, the kernel, which tracks sequence
// windows, is believed: the flow is resynchronised to established. Without
// the hint rule, pickup does not happen and mid-stream TCP packets of old
// flows are invalid.
//
// # Timeouts
//
// Each packet sets its flow's deadline to now plus the timeout of the state it
// leaves the flow in. The defaults (DefaultTimeouts) are the kernel's except
// established TCP: 1 hour, not 5 days, because pickup makes losing an idle
// flow cheap (one policy evaluation) while idle flows would otherwise fill a
// bounded table. All are configurable. Time comes from Config.Now or the now
// argument of TrackAt, so tests drive a fake clock.
//
// # Expiry without pauses
//
// Expire examines a bounded slice (Config.ExpireBatch entries) of one shard per
// call, under that shard's lock only, rotating over the shards; Run calls it
// from a ticker. Track reclaims an expired entry it finds for its own tuple,
// and eviction takes an expired entry first. No operation walks the whole
// table under one lock, except Flush and Range, which go shard by shard.
//
// # The cap and eviction
//
// Config.MaxFlows is a hard, table-wide cap. A new flow that would exceed it
// first evicts one: among the next 8 live entries of the shard (a cursor
// rotating through its entries), the first already expired; else the one
// that never saw a reply (half-open TCP, unanswered UDP: what floods create)
// with the earliest deadline; else the one with the earliest deadline, which
// prefers closing flows to established ones. An evicted established flow
// comes back through pickup on its next packet. When the new flow's shard is
// empty the victim comes from the first other shard whose lock is free; if
// none is, the packet is answered without being tracked.
//
// # Layout and cost
//
// The table is split into shards (a power of two, hash-selected) so workers
// rarely share a lock. Each shard is an open-addressing index (linear probing,
// backward-shift deletion) of 8-byte slots holding 32 hash bits and an entry
// number, over fixed 112-byte entries stored in chunks of 1024. Entries hold
// no pointers, so the garbage collector never scans them. A packet of a known
// flow costs one hash, one probe sequence and one lock, and allocates nothing.
// A shard's index doubles when three quarters full, rehashing from the hash
// bits in its slots without touching entries (a pause of that shard alone,
// ~32k slots at a million flows); entries never move, so memory grows in
// 112 KiB chunks and stays allocated (Flush keeps it for reuse).
//
// In a table much larger than the CPU cache a lookup waits for two memory
// loads in a row, the slot and then the entry (see bench/README.md,
// In-process path, for the figures). A caller with several
// packets at hand uses the Lookahead path instead: Prefetch for each packet
// (hash, start loading the slot's line, no lock), PrefetchEntry for each
// (read the slot, start loading the entry), then TrackAhead for each, which
// answers exactly as TrackAt. The loads of the group are then in flight
// together, in groups of 8 (BenchmarkLookupHitBatch against
// BenchmarkLookupHit). The pipeline
// looks packets up this way.
//
// # Decision cache
//
// SetCache stores an opaque Cache (a value and the policy generation that
// produced it) on a flow; later packets of the flow return it in Result. The
// caller decides whether a decision may be cached (policies.Decision
// Cacheable) and ignores a cache whose generation is older than its program,
// so a policy reload invalidates all cached decisions without touching the
// table. Invalid and related packets never carry a cache. FlowID handles are
// versioned: a handle to a flow that ended is detected and never reaches the
// flow that reused its entry.
package conntrack
