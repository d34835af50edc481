package l7

import (
	"fmt"
	"strings"
	"testing"
)

func TestNameMatcher(t *testing.T) {
	m, err := NewNameMatcher([]string{"Exact.Example", "*.ads.example", "both.example", "*.both.example", "*.Tracker.NET.", "_dmarc.mail.example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{"exact.example", true},
		{"EXACT.example", true},
		{"exact.example.", true},
		{"x.exact.example", false},
		{"xexact.example", false},
		{"ads.example", false}, // a wildcard is strictly below its suffix
		{"x.ads.example", true},
		{"a.b.c.ads.example", true},
		{"X.ADS.Example", true},
		{"x.ads.example.", true},
		{"xads.example", false},
		{"ads.example.com", false},
		{"both.example", true},
		{"deep.both.example", true},
		{"cdn.tracker.net", true},
		{"tracker.net", false},
		{"_dmarc.mail.example", true},
		{`a\046b.ads.example`, true},     // escaped '.' stays inside its label
		{`x.ads\046example`, false},      // one label "ads.example" is not the zone
		{`evil\046exact.example`, false}, // not exact
		{"..ads.example", true},          // empty labels from a careless SNI
		{"", false},
		{".", false},
		{"example", false},
		{strings.Repeat("a.", 200) + "ads.example", true},
		{strings.Repeat("A.", 200) + "ADS.example", true},
		{strings.Repeat("A", 300) + ".ads.example", true},
		{strings.Repeat("A", 300) + "ads.example", false},
	}
	for _, tt := range tests {
		if got := m.Match([]byte(tt.name)); got != tt.want {
			t.Errorf("Match(%.40q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if m.Len() != 5 {
		t.Errorf("Len = %d, want 5", m.Len())
	}
}

func TestNameMatcherEmpty(t *testing.T) {
	m, err := NewNameMatcher(nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Match([]byte("example.com")) {
		t.Fatal("empty matcher matched")
	}
}

func TestNewNameMatcherErrors(t *testing.T) {
	tests := []struct {
		pattern string
		why     string
	}{
		{"", "empty name"},
		{".", "empty name"},
		{"*", `"*" alone`},
		{"*.", `"*" alone`},
		{"*.*.example", `"*" is allowed only`},
		{"a*.example", `"*" is allowed only`},
		{"foo.*.example", `"*" is allowed only`},
		{"**.example", `"*" is allowed only`},
		{"a..example", "empty label"},
		{".example", "empty label"},
		{strings.Repeat("a", 64) + ".example", "limit is 63"},
		{strings.Repeat("abc.", 64) + "x", "limit is 253"},
		{"bücher.example", "xn--"},
		{"a b.example", "not allowed"},
		{`a\.example`, "not allowed"},
	}
	for _, tt := range tests {
		_, err := NewNameMatcher([]string{"good.example", tt.pattern})
		if err == nil {
			t.Errorf("%q: no error", tt.pattern)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.pattern)) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("%q: error %q should name the pattern and say %q", tt.pattern, err, tt.why)
		}
	}
}

func TestNameMatcherDNSRoundTrip(t *testing.T) {
	// What DNSQueryName produces is what Match expects.
	m, err := NewNameMatcher([]string{"*.ads.example"})
	if err != nil {
		t.Fatal(err)
	}
	name, err := DNSQueryName(dnsQuery(1, "Banner.ADS.example."), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match(name) {
		t.Fatalf("%q not matched", name)
	}
}

func TestNameMatcherNoAllocs(t *testing.T) {
	m := benchMatcher(t, 1000)
	names := [][]byte{[]byte("www.host500.example"), []byte("WWW.HOST500.EXAMPLE"), []byte("host7.example"), []byte("nothing.here.example.org")}
	allocs := testing.AllocsPerRun(100, func() {
		for _, n := range names {
			m.Match(n)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

// benchMatcher returns a matcher with n patterns, half exact and half
// wildcards.
func benchMatcher(tb testing.TB, n int) *NameMatcher {
	tb.Helper()
	patterns := make([]string, 0, n)
	for i := range n {
		if i%2 == 0 {
			patterns = append(patterns, fmt.Sprintf("host%d.example", i+1))
		} else {
			patterns = append(patterns, fmt.Sprintf("*.host%d.example", i-1))
		}
	}
	m, err := NewNameMatcher(patterns)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func BenchmarkNameMatcher(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		m := benchMatcher(b, n)
		for _, c := range []struct{ label, name string }{
			{"hit-wildcard", "cdn.www.host500.example"},
			{"hit-exact", "host7.example"},
			{"miss", "www.some-other-site.example.org"},
			{"miss-upper", "WWW.SOME-OTHER-SITE.EXAMPLE.ORG"},
		} {
			name := []byte(c.name)
			b.Run(fmt.Sprintf("patterns=%d/%s", n, c.label), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					m.Match(name)
				}
			})
		}
	}
}
