// Command naive is the go-nfqueue README loop, kept as the reference it is:
// Register a hook that answers every packet with SetVerdict(id, NfAccept),
// one read and one verdict write per packet. bench/e2e measures fwagent
// against it and against the C loop in bench/cloop.
package main
