// Package policies is the typed policy model (Policy, Rule, Match, Test)
// and its compiled engine: Compile turns a loaded Policy into a Program that
// decides, per packet, accept, drop or reject. It reads no YAML: the
// loader, policies/policyload, builds a Policy from a file (with every
// error at its FILE:LINE:COL, an *Error of this package), and
// policies/policytest runs a policy's own tests: on a Program. Both import
// this package, never the other way round.
//
// Compile builds an immutable Program whose Decide costs about the same for
// ten rules as for ten thousand: each indexed field (hook, family and
// protocol together, source and destination address through bart tables,
// source and destination port through 65,536-entry tables) maps the packet's
// value to the bitset of rules the field admits, and to the part of it whose
// primary field it is (each rule's most selective constrained field). Decide
// visits only the 64-rule words where a primary bit is set and every field's
// summary admits something, ANDs the full bitsets there, and takes the lowest
// surviving bit as the candidate. Only the candidate's rare fields
// (interfaces, state, TCP flags, ICMP type, length, L7, payload, limit) are
// then checked; if one fails, the next candidate is tried. Decide allocates
// nothing and does no I/O. Memory grows with the number of distinct field
// values times the number of rules / 8 bytes: about 55 MB for a generated
// 10,000-rule policy whose every rule has its own ports.
//
// L7 name fields (dns_qname, tls_sni, http_host) read what Input.Streams,
// the pipeline's per-flow TCP reassembly, has of the stream (or, without it,
// the packet alone); payload reads the packet. A packet that does not
// complete what such a field reads (a TCP handshake, the first segments of
// a ClientHello, part of a DNS message or HTTP request head) makes the rule
// "pending": Decide accepts the packet at once (Decision.Pending), neither
// Cacheable nor offloaded, so the flow reaches the bytes that decide. A
// decision by a tls_sni or payload rule is Cacheable: it holds for the rest
// of the flow; one by (or after skipping) a dns_qname or http_host rule is
// not, because every message on a connection names its own host. With
// several names in one packet (the questions of a query, pipelined
// requests), an accept rule needs every name to match and a drop or reject
// rule any.
//
// Cacheable speaks for later packets of the same flow, same direction, same
// hook and same flow state (the pipeline keys its cache on all four): it is
// false when the deciding rule looks at tcp_flags, length or a limit, or
// when an earlier rule was skipped for a field that may hold for a later
// packet in the same state (tcp_flags, length, L7, payload, limit).
//
// Offload follows docs/policy.md, "Offload": an accept whose deciding rule looks at nothing
// that changes inside a flow (payload, L7, tcp_flags, length, limit) offloads
// unless the rule says offload: false, and unless an earlier rule was skipped
// for a per-packet field (an L7 rule still waiting for its payload must see
// it). State does change inside a flow (new, then established, as the
// kernel's conntrack sees it), so a decision involving it offloads only when
// it holds for every later packet the kernel's offload rule would accept:
// the deciding rule's state match must cover the later states, and no
// earlier rule may have been skipped only for a state a later packet can
// have (unless that rule is an offloading accept that logs nothing, which
// ends the same way). Related and invalid packets never offload. A rule
// that sets a mark does not offload by default, because the kernel would
// pass the rest of the flow unmarked. A default accept offloads under the
// same conditions on skipped rules. An offload holds for one hook and
// direction only: the kernel rules keep a bit per hook and direction.
//
// Policy tests (tests:) are run by policies/policytest.
package policies
