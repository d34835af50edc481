package l7

import "testing"

// TestParseNumber: Content-Length is decimal up to 18 digits, a chunk size
// hex (either case) up to 15; anything else in them is refused.
func TestParseNumber(t *testing.T) {
	const decimal, hex = 10, 16
	maxDigits := map[int64]int{decimal: 18, hex: 15}
	parsed := map[int64]map[string]int64{
		decimal: {"0": 0, "1234": 1234, "999999999999999999": 999999999999999999},
		hex:     {"0": 0, "fF": 255, "7fffffffffffff": 0x7fffffffffffff},
	}
	refused := map[int64][]string{
		decimal: {"", "1000000000000000000", "12a", "-1", "+1", " 1"},
		hex:     {"", "7fffffffffffffff", "1g", " 1", "0x1"},
	}
	for base, cases := range parsed {
		for in, want := range cases {
			if got, ok := parseNumber([]byte(in), base, maxDigits[base]); !ok || got != want {
				t.Errorf("base %d: parseNumber(%q) = %d, %v; want %d", base, in, got, ok, want)
			}
		}
	}
	for base, ins := range refused {
		for _, in := range ins {
			if got, ok := parseNumber([]byte(in), base, maxDigits[base]); ok {
				t.Errorf("base %d: parseNumber(%q) = %d, want refused", base, in, got)
			}
		}
	}
}
