// Package droplog turns the packets the agent's kernel rules log to NFLOG
// into structured events and writes them to sinks: JSON lines on stdout or a
// size-rotated file (OpenRotatingFile), and the packets themselves as a
// rotated pcap file (OpenPcapFile) that Wireshark and tcpdump open.
//
// # Where events come from
//
// The agent answers a packet that must be logged with NF_REPEAT and a packet
// mark (nf.Marks: action code, established bit, rule ID); the rules at the
// top of the agent's chain match the mark, `log group G prefix
// "fwagent:<event>"` the packet and drop, reject or accept it. A Reader
// listens on group G, reads the kernel's batches of log messages (up to 128
// KiB each, several per recvmmsg) and parses them in place (batch.go,
// nflogmsg.go), decodes the copied packet headers with
// internal/packet, resolves the rule ID through the current policy and the
// interface indices to names, and queues the event for the sinks.
//
// # Event schema
//
// One JSON object per line, keys in this order; optional keys are left out
// rather than written empty:
//
//	time       string  when the kernel logged the packet: RFC 3339, UTC, with a
//	                   fixed nine-digit fraction ("2026-11-27T13:04:05.000120000Z")
//	rule       string  the deciding rule's name from the policy; "default" when a
//	                   hook's default decided (ID 0); "rule-N" when the policy no
//	                   longer has rule ID N (e.g. just after a reload)
//	verdict    string  what happened to the packet: drop | reject | accept
//	                   (audit events are accepted)
//	event      string  drop | reject | accept | would_drop | would_reject, from the
//	                   prefix, else from the action in the mark; "unknown" (and
//	                   verdict "unknown") for a message neither explains
//	hook       string  input | forward | output (prerouting, postrouting or
//	                   unknown only if someone else logs to the group)
//	family     string  ipv4 | ipv6 (unknown if the payload is not IP)
//	proto      string  tcp | udp | icmp | icmpv6 | sctp | gre | esp, or the
//	                   protocol number in decimal ("4")
//	src, dst   string  addresses; absent if the payload could not be decoded
//	sport      number  source port (tcp, udp, sctp); absent when 0 or no ports
//	dport      number  destination port, likewise
//	length     number  the IP packet length from its header (not the copied part)
//	in, out    string  input and output interface names; absent when none
//	tcp_flags  string  tcp only: pf's flag letters in pf's order FSRPAUEW,
//	                   e.g. "S" (SYN), "SA" (SYN-ACK), "FA", "" (none set)
//	icmp_type  number  icmp and icmpv6 only
//	icmp_code  number  icmp and icmpv6 only
//	prefix     string  the rule's own log prefix (`log: {prefix: ...}`) if it
//	                   has one, else the raw NFLOG prefix, e.g. "fwagent:drop"
//	mark       number  the packet mark, in decimal
//	uid, gid   number  the owner of the packet's local socket (NFULA_UID/GID);
//	                   absent when the packet has no full socket (forwarded,
//	                   most input before a connection is established)
//	cgroup     string  the cgroup v2 path of that socket, "/system.slice/x";
//	                   absent when unknown (no socket found, no cgroup2 mount)
//
// Every string is escaped the way encoding/json escapes it (control
// characters, quotes, <, >, &, U+2028/U+2029, invalid UTF-8), so an
// interface name or prefix cannot end a string or inject a line. Events are
// encoded by a hand-written appender (Event.AppendJSON), tested and fuzzed to
// produce the same bytes as encoding/json, faster and without allocating
// (BenchmarkEncode*; see bench/README.md, Figures behind design choices).
// BenchmarkSerialPath (decode, resolve, encode, write) and
// BenchmarkBatchPipeline (from a kernel datagram, through the queue, to the
// sink) measure the whole path; bench/README.md has the figures.
//
// # Shedding
//
// The reader goroutine must keep up with the kernel, so it never waits for a
// sink. Between them sits a bounded queue (Config.Buffer events, 4096 by
// default): when it is full the new event is shed and counted
// (Stats.Shed). Received = Written + Shed whenever the queue is empty and
// after Run returns. Messages the kernel could not deliver because the
// socket buffer was full never reach the reader; they show as gaps in the
// NFLOG sequence numbers and are counted in Stats.Lost. Sinks buffer and are
// flushed whenever the queue runs empty and at least every
// Config.FlushInterval, so `tail -f` sees events promptly; the kernel is
// asked to hand over logged packets within 0.1 s. A JSON sink whose writer
// fails (disk full) drops its buffer and starts over, so it recovers when
// the writer does; failures count in Stats.Errors.
//
// # Rate limit
//
// Config.Rate caps the events per second (a token bucket with Config.Burst,
// internal/ratelimit). Events over it are counted in Stats.RateLimited and
// dropped before they are decoded, so a flood costs the reader little and
// no disk (see bench/README.md, Figures behind design choices). Received =
// Written + Shed + RateLimited once the queue is empty.
//
// # Files on disk
//
// The JSON file rotates when the next write would take it past
// RotateConfig.MaxSizeMB, and keeps MaxBackups rotated files (gzipped with
// Compress, removed after MaxAgeDays), so it never holds more than
// MaxSizeMB x (MaxBackups+1). The JSON sink hands the file whole lines only,
// so no event is split between two files. The pcap sink is a PacketSink: it
// gets the copied packet (Config.CopyRange bytes, so set that to 0xffff for
// whole packets; a shorter copy is recorded as it is, and Wireshark then
// reports the IP length running past the captured bytes) and
// rotates to NAME.1.pcap, NAME.2.pcap, ... by the same size and count. Only
// with a PacketSink is each packet copied out of the receive buffer (one
// allocation per event); Config.PacketBuffer bounds the bytes queued.
//
// # Start-up
//
// The kernel discards what it logs to a group nobody has bound. Reader.Ready
// is closed once Run has bound the group: install the rules that log after
// it.
//
// # Reading the log
//
// Top rules by drops:
//
//	jq -r 'select(.verdict=="drop") | .rule' events.json | sort | uniq -c | sort -rn
//
// Who is knocking on which port, live:
//
//	tail -f events.json | jq -r 'select(.event=="drop") | "\(.time) \(.src) -> \(.dst):\(.dport // "-") \(.proto) \(.rule)"'
//
// What audit mode would have dropped:
//
//	jq -c 'select(.event|startswith("would_")) | {rule, src, dst, proto, dport}' events.json
package droplog
