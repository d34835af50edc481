package l7

import "testing"

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		in        string
		base      int64
		maxDigits int
		want      int64
		ok        bool
	}{
		{"0", 10, 18, 0, true},
		{"1234", 10, 18, 1234, true},
		{"999999999999999999", 10, 18, 999999999999999999, true},
		{"1000000000000000000", 10, 18, 0, false}, // 19 digits
		{"12a", 10, 18, 0, false},
		{"-1", 10, 18, 0, false},
		{"", 10, 18, 0, false},
		{"fF", 16, 15, 255, true},
		{"7fffffffffffffff", 16, 15, 0, false}, // 16 digits
		{"1g", 16, 15, 0, false},
		{" 1", 16, 15, 0, false},
	} {
		got, ok := parseNumber([]byte(tc.in), tc.base, tc.maxDigits)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseNumber(%q, %d) = %d, %v; want %d, %v", tc.in, tc.base, got, ok, tc.want, tc.ok)
		}
	}
}
