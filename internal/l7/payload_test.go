package l7

import (
	"bytes"
	"testing"
)

func TestPayloadMatcher(t *testing.T) {
	payload := []byte("SSH-2.0-OpenSSH_9.6\r\n")
	tests := []struct {
		name          string
		needle        string
		offset, depth int
		payload       []byte
		want          bool
	}{
		{"anywhere", "OpenSSH", 0, 0, payload, true},
		{"at start", "SSH-", 0, 4, payload, true},
		{"depth one short", "SSH-", 0, 3, payload, false},
		{"inside window", "OpenSSH", 8, 7, payload, true},
		{"straddles window end", "OpenSSH", 8, 6, payload, false},
		{"starts before offset", "OpenSSH", 9, 0, payload, false},
		{"depth past end", "\r\n", 0, 1000, payload, true},
		{"offset past end", "x", 100, 0, payload, false},
		{"offset at end, empty needle", "", len(payload), 0, payload, true},
		{"empty needle", "", 0, 0, nil, true},
		{"empty payload", "a", 0, 0, nil, false},
		{"negative offset and depth", "SSH", -5, -1, payload, true},
		{"binary", "\xde\xad\xbe\xef", 2, 4, []byte{0, 1, 0xde, 0xad, 0xbe, 0xef}, true},
		{"absent", "HTTP", 0, 0, payload, false},
	}
	for _, tt := range tests {
		m := NewPayloadMatcher([]byte(tt.needle), tt.offset, tt.depth)
		if got := m.Match(tt.payload); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPayloadMatcherOwnsNeedle(t *testing.T) {
	needle := []byte("abc")
	m := NewPayloadMatcher(needle, 0, 0)
	needle[0] = 'x'
	if !m.Match([]byte("abc")) {
		t.Fatal("matcher changed with the caller's slice")
	}
}

func TestPayloadMatcherNoAllocs(t *testing.T) {
	m := NewPayloadMatcher([]byte("needle"), 10, 500)
	p := append(bytes.Repeat([]byte{'x'}, 400), "needle"...)
	allocs := testing.AllocsPerRun(100, func() { m.Match(p) })
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func BenchmarkPayloadMatcher(b *testing.B) {
	m := NewPayloadMatcher([]byte("SSH-"), 0, 0)
	p := bytes.Repeat([]byte("GET /index.html HTTP/1.1\r\n"), 56) // ~1,400 bytes, no match
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		m.Match(p)
	}
}
