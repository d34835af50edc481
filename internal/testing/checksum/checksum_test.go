package checksum

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestInternet(t *testing.T) {
	// RFC 1071's example: the folded sum of these bytes is 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Internet(0, b); got != ^uint16(0xddf2) {
		t.Errorf("Internet(RFC 1071 example) = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	// An odd length pads with a zero byte.
	if got, want := Internet(0, []byte{0x12, 0x34, 0x56}), Internet(0, []byte{0x12, 0x34, 0x56, 0}); got != want {
		t.Errorf("odd length: %#04x, want %#04x", got, want)
	}
	// Bytes that carry their own checksum sum to 0.
	c := binary.BigEndian.AppendUint16(append([]byte(nil), b...), Internet(0, b))
	if got := Internet(0, c); got != 0 {
		t.Errorf("with its checksum: %#04x, want 0", got)
	}
}

func TestPseudo(t *testing.T) {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	// 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + proto 17 + length 8
	if got, want := Pseudo(src, dst, 17, 8), uint32(0x0a00+1+0x0a00+2+17+8); got != want {
		t.Errorf("Pseudo v4 = %#x, want %#x", got, want)
	}
	src6, dst6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	if got, want := Pseudo(src6, dst6, 6, 20), uint32(2*(0x2001+0x0db8)+1+2+6+20); got != want {
		t.Errorf("Pseudo v6 = %#x, want %#x", got, want)
	}
}
