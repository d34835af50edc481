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
