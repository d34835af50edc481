// Package policytest runs a policy's own tests (tests:) on its compiled
// Program. Run builds each packet from its description, as
// policies/policyload read it; fields it leaves out default to: hook input,
// state new, proto tcp (udp with dns_qname, icmp or icmpv6 with icmp_type),
// src 1.2.3.4 and dst 5.6.7.8 (2a00:1::1 and 2a00:2::2 for IPv6: ordinary
// addresses outside the ranges policies list), sport 40000, dport 0 (53 with
// dns_qname, 443 with tls_sni), TCP flags S when new and A otherwise (PA
// with a payload), ICMP type echo-request, and the length of the headers and
// payload. dns_qname and tls_sni become a real DNS query and TLS
// ClientHello, so the same parsers run as on the wire. expect is compared
// with the decision's action, so tests keep their meaning in mode: audit.
package policytest
