// Package pipeline turns one raw IP packet into a verdict: decode, track,
// decide, encode the answer for the kernel.
//
// It is the part of the agent that does not care where packets come from.
// The queue reader in verdict/ drives it live; `fwagent eval`, the tests and
// the benchmarks drive the very same code from a capture file or a slice of
// packets, so what they measure and assert is what runs in production.
//
// One Worker per goroutine: a Worker owns its decoder and scratch space and
// is not safe for concurrent use; everything shared between workers (the
// current policy, the flow table, counters) lives in Shared and is safe.
package pipeline
