// Package policies turns a user's YAML policy into a compiled Program that
// decides, per packet, accept, drop or reject.
//
// The format is the contract in POLICY.md. Loading walks yaml.Node trees
// rather than unmarshalling into structs, so every complaint names the
// file, line and column of the node at fault (an *Error); set files report
// their own positions. Validation rejects what cannot be meant (unknown keys
// and sets, host bits in CIDRs, rules that can never match) and warns about
// what is merely suspicious (shadowed rules, unused sets).
//
// Compile builds an immutable Program whose Decide costs about the same for
// ten rules as for ten thousand: each indexed field (hook, family, protocol,
// source and destination address, source and destination port) maps the
// packet's value to a bitset of the rules that field allows, the bitsets are
// ANDed one 64-rule word at a time (skipping empty words through a summary
// bitset), and the lowest surviving bit is the candidate. Only the candidate's
// rare fields (state, TCP flags, ICMP type, length, interfaces, L7, payload,
// limit) are then checked; if one fails, the next candidate is tried. Decide
// allocates nothing and does no I/O.
//
// L7 fields (dns_qname, tls_sni, payload) look at the packet's transport
// payload only, one packet at a time (no reassembly). A packet with no
// decisive payload (a TCP handshake, an empty segment, a ClientHello split
// across segments) does not match an L7 rule and falls through to the next
// rule; a decision made after such a fall-through is neither Cacheable nor
// offloaded, so the flow is decided again on its next packet, until the
// payload decides. A decision by an L7 rule is Cacheable: it holds for the
// rest of the flow. An allowlist therefore needs a rule that lets the
// handshake through (see examples/tls-egress-allowlist.yaml).
//
// Cacheable speaks for later packets of the same flow, same direction, same
// hook: it is false when the deciding rule looks at tcp_flags, length or a
// limit, when its state match may stop holding, or when an earlier rule was
// skipped for a field that may hold for a later packet (state, tcp_flags,
// length, L7, payload, limit).
//
// Offload follows POLICY.md: an accept whose deciding rule looks at nothing
// that changes inside a flow (payload, L7, tcp_flags, length, limit) offloads
// unless the rule says offload: false, and unless an earlier rule was skipped
// for a per-packet field other than state (an L7 rule still waiting for its
// payload must see it). A state match does not
// block offload unless it admits invalid packets: accepting the rest of a flow
// the tracker called new, established or related is what a stateful firewall
// does anyway. A rule that sets a mark does not offload by default, because
// the kernel would pass the rest of the flow unmarked. A default accept
// offloads when the decision is Cacheable.
package policies
