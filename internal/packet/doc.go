// Package packet decodes a queued payload, which starts at the IP header, into
// a reusable Packet view without allocating.
//
// One Decoder belongs to one worker: it owns a gopacket DecodingLayerParser
// and the layer structs it fills, so it is not safe for concurrent use. The
// network layer (IPv4 header and options, IPv6 extension header chain) and
// the headers quoted inside ICMP errors are decoded by hand, bounds-checked;
// the transport headers (TCP, UDP, SCTP, ICMP, ICMPv6) by gopacket's layers.
// Every error Decode returns is one of the package's sentinel errors, so the
// error path allocates nothing either.
//
// Build and BuildICMPError serialise valid packets from a Spec, for tests,
// benchmarks and tools that need real packets.
package packet
