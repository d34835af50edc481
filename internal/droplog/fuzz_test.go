package droplog

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// FuzzFill feeds arbitrary log payloads, prefixes, marks and hooks through
// the path a kernel message takes (decode, including the rewrite of a cut
// copy, then encode) and checks that every message still becomes one valid
// JSON line, that the payload is not modified, and that hostile prefixes
// round-trip.
func FuzzFill(f *testing.F) {
	big := make([]byte, 1000)
	f.Add(build(f, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 2}, gopacket.Payload("x")), "fwagent:drop", uint32(0x10000), uint8(1))
	f.Add(build(f, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 53, DstPort: 9}, gopacket.Payload(big))[:DefaultCopyRange], "fwagent:drop", uint32(0x30001), uint8(1))
	f.Add(build(f, ip6(layers.IPProtocolUDP), &layers.UDP{SrcPort: 53, DstPort: 9}, gopacket.Payload(big))[:DefaultCopyRange], "fwagent:would_drop", uint32(0x50000), uint8(3))
	f.Add(build(f, ip6(layers.IPProtocolTCP), &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true}, gopacket.Payload(big))[:100], "fwagent:reject", uint32(0x20000), uint8(2))
	f.Add(build(f, ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(big[:28])), "\"}\n{", uint32(0), uint8(9))
	f.Add([]byte{0x45}, "", uint32(0), uint8(0))
	f.Add([]byte{0x60, 0, 0, 0, 0xff, 0xff}, "fwagent:\xff", uint32(0xffffffff), uint8(4))

	r := newTestReader(f, Config{}, NewJSONSink(&bytes.Buffer{}))
	ts := time.Unix(1, 0)
	f.Fuzz(func(t *testing.T, payload []byte, prefix string, mark uint32, hook uint8) {
		orig := slices.Clone(payload)
		in, proto := uint32(2), uint16(unix.ETH_P_IP)
		a := nflog.Attribute{Payload: &payload, Prefix: &prefix, Mark: &mark, Hook: &hook, InDev: &in, HwProtocol: &proto, Timestamp: &ts}
		var ev Event
		r.fill(&ev, &a)
		if !bytes.Equal(payload, orig) {
			t.Fatal("fill modified the payload")
		}
		line := ev.AppendJSON(nil)
		if bytes.ContainsAny(line, "\n\r") {
			t.Fatalf("event spans lines: %q", line)
		}
		var back map[string]any
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if utf8.ValidString(prefix) && back["prefix"] != prefix {
			t.Fatalf("prefix %q came back as %q", prefix, back["prefix"])
		}
		switch back["verdict"] {
		case "drop", "reject", "accept", "unknown":
		default:
			t.Fatalf("verdict %q", back["verdict"])
		}
		if ev.L4 && ev.Length < 20 {
			t.Fatalf("transport header decoded from a %d-byte packet", ev.Length)
		}
	})
}
