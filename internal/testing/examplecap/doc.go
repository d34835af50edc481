// Package examplecap builds the packet captures that exercise the example
// policies under policies/examples through `fwagent eval`.
//
// Every capture is made by the project's own code (packet.Build, the capture
// package's pcap writer, pcapgo's pcapng writer, crypto/tls for ClientHellos),
// so its packets are known by design: each flow's handshake, payload and
// timestamps are written here, and the tests in cmd/fwagent derive the
// per-rule counts they expect from this design, not from eval's output.
// The files under policies/examples/testdata are these captures, committed;
// `go test ./internal/testing/examplecap -update` rewrites them, and the same test
// without -update fails when the generator and the files drift apart.
//
// Captures cover the reader's link types: raw IP pcap, Ethernet pcapng (with
// a VLAN tag and a non-IP frame) and Linux cooked (SLL) pcap.
package examplecap
