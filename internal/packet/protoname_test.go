package packet

import "testing"

func TestAppendProtoName(t *testing.T) {
	for p, want := range map[uint8]string{
		ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMP: "icmp", ProtoICMPv6: "icmpv6",
		ProtoSCTP: "sctp", ProtoGRE: "gre", ProtoESP: "esp", 0: "0", 4: "4", 255: "255",
	} {
		if got := string(AppendProtoName([]byte("x"), p)); got != "x"+want {
			t.Errorf("AppendProtoName(%d) = %q, want %q", p, got, "x"+want)
		}
	}
}

func TestProtoByName(t *testing.T) {
	for name, want := range map[string]uint8{
		"tcp": ProtoTCP, "udp": ProtoUDP, "icmp": ProtoICMP, "icmpv6": ProtoICMPv6,
		"sctp": ProtoSCTP, "gre": ProtoGRE, "esp": ProtoESP,
	} {
		if got, ok := ProtoByName(name); !ok || got != want {
			t.Errorf("ProtoByName(%q) = %d, %v, want %d", name, got, ok, want)
		}
	}
	for _, name := range []string{"", "6", "TCP", "ip"} {
		if got, ok := ProtoByName(name); ok {
			t.Errorf("ProtoByName(%q) = %d, want none", name, got)
		}
	}
}
