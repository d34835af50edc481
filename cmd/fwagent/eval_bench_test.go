package main

import (
	"io"
	"testing"
)

// BenchmarkEval runs `fwagent eval --summary` over the every-key capture:
// policy load and compile, capture read, decode, track, decide, summary.
func BenchmarkEval(b *testing.B) {
	args := []string{"eval", "--summary", "--hook", "input", "--iif", "eth0",
		"--policy", exampleCapture("every-key.yaml"), exampleCapture("every-key.pcap")}
	b.ReportAllocs()
	for b.Loop() {
		if code := run(args, io.Discard, io.Discard); code != exitOK {
			b.Fatalf("exit %d", code)
		}
	}
}
