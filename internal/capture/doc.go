// Package capture reads packet captures (pcap and pcapng) as a stream of IP
// packets, and writes IP packets as a classic pcap file.
//
// The reader is the capture-file packet source behind `fwagent eval`: it
// strips the link-layer header of every supported link type (Ethernet with
// VLAN tags, raw IP, Linux cooked SLL and SLL2, BSD loopback), so each Frame
// starts at the IP header exactly like a payload read from NFQUEUE. Frames
// that do not carry IP are skipped and counted. The writer backs the drop-log
// pcap sink; it writes LINKTYPE_RAW, which Wireshark and tcpdump open.
package capture
