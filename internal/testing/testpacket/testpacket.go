// Package testpacket builds packets for tests, failing the test when a
// spec cannot be built, so that a table of packets reads as specs alone.
package testpacket

import (
	"testing"

	"github.com/fwagent/fwagent/internal/packet"
)

// Build returns the bytes of the packet s describes.
func Build(tb testing.TB, s packet.Spec) []byte {
	tb.Helper()
	b, err := packet.Build(s)
	if err != nil {
		tb.Fatalf("build packet %+v: %v", s, err)
	}
	return b
}
