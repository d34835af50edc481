package l7

import (
	"bytes"
	"errors"
	"testing"
)

func TestDNSQueryName(t *testing.T) {
	label63 := string(bytes.Repeat([]byte{'a'}, 63))
	// 3*64 + 62 + 1 = 255 wire bytes: the longest legal name.
	longest := label63 + "." + label63 + "." + label63 + "." + string(bytes.Repeat([]byte{'b'}, 61))
	tests := []struct {
		name string
		msg  []byte
		want string
		err  error
	}{
		{"simple", dnsQuery(1, "www.Example.COM"), "www.example.com", nil},
		{"root", dnsQuery(1, ""), "", nil},
		{"single label", dnsQuery(1, "localhost"), "localhost", nil},
		{"longest name", dnsQuery(1, longest), longest, nil},
		{"name too long", dnsQuery(1, longest+"b"), "", ErrNameTooLong},
		{"too many labels", dnsQuery(1, string(bytes.Repeat([]byte("a."), 128))), "", ErrNameTooLong},
		{"dot inside label", append(append(dnsHeader(), 3, 'a', '.', 'b', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0), 0, 1, 0, 1), `a\046b.example`, nil},
		{"control bytes escaped", append(append(dnsHeader(), 3, 0, ' ', '\\', 1, 0xff, 0), 0, 1, 0, 1), `\000\032\092.\255`, nil},
		{"response", func() []byte { m := dnsQuery(1, "a.example"); m[2] |= 0x80; return m }(), "", ErrNotQuery},
		{"no question", func() []byte { m := dnsQuery(1, "a.example"); m[5] = 0; return m }(), "", ErrNoQuestion},
		{"short header", []byte{1, 2, 3}, "", ErrTruncated},
		{"missing qtype", dnsQuery(1, "a.example")[:23], "", ErrTruncated},
		{"label runs past end", append(dnsHeader(), 5, 'a', 'b'), "", ErrTruncated},
		{"label length 64", append(append(dnsHeader(), 64), bytes.Repeat([]byte{'a'}, 70)...), "", ErrLabelTooLong},
		{"extended label type", append(dnsHeader(), 0x41, 1, 2, 0, 0, 1, 0, 1), "", ErrLabelTooLong},
		{"reserved label type", append(dnsHeader(), 0x80, 1, 2, 0, 0, 1, 0, 1), "", ErrLabelTooLong},
		{"pointer to itself", append(dnsHeader(), 0xc0, 12, 0, 1, 0, 1), "", ErrPointer},
		{"two pointers to each other", append(dnsHeader(), 0xc0, 14, 0xc0, 12, 0, 1, 0, 1), "", ErrPointer},
		// Lenient resolvers follow a pointer forwards: the name is the
		// one they would resolve.
		{"forward pointer", append(dnsHeader(), 0xc0, 18, 0, 1, 0, 1, 1, 'a', 0), "a", nil},
		{
			"forward pointer to a longer name",
			append(dnsHeader(), 1, 'x', 0xc0, 20, 0, 1, 0, 1, 7, 'b', 'l', 'o', 'c', 'k', 'e', 'd', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0),
			"x.blocked.example", nil,
		},
		{"pointer past the end", append(dnsHeader(), 0xc0, 40, 0, 1, 0, 1), "", ErrTruncated},
		{"loop through earlier label", append(dnsHeader(), 1, 'a', 0xc0, 12, 0, 1, 0, 1), "", ErrNameTooLong},
		{"pointer truncated", append(dnsHeader(), 1, 'a', 0xc0), "", ErrTruncated},
		{
			// A pointer into the header is backwards and legal: the
			// header bytes 0x00 0x01 0x00 ... read as a root label here.
			"pointer into header",
			append([]byte{0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, 1, 'x', 0xc0, 5, 0, 1, 0, 1),
			"x.\\000", nil,
		},
		{
			// Two pointers that each point further back end the walk.
			"chained backwards pointers",
			append([]byte{0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, 1, 'x', 0xc0, 11, 0, 1, 0, 1),
			"x", nil,
		},
		{
			// Pointers that jump backwards and forwards but reach a
			// root label name the root, as they do for a resolver.
			"pointer ping-pong",
			append([]byte{0x12, 0x34, 0x00, 0x00, 0, 1, 0xc0, 10, 0xc0, 6, 0, 0}, 0xc0, 8, 0, 1, 0, 1),
			"", nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep:")
			got, err := DNSQueryName(tt.msg, dst)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				if string(got) != "keep:" {
					t.Fatalf("dst changed on error: %q", got)
				}
				return
			}
			if string(got) != "keep:"+tt.want {
				t.Fatalf("name = %q, want %q", got[5:], tt.want)
			}
		})
	}
}

func TestDNSQueryNameEveryPrefix(t *testing.T) {
	msg := dnsQuery(0xbeef, "a.very-long-label-for-testing.example.org")
	for n := range len(msg) {
		if _, err := DNSQueryName(msg[:n], nil); err == nil {
			t.Fatalf("prefix of %d bytes parsed without error", n)
		}
	}
	if _, err := DNSQueryName(msg, nil); err != nil {
		t.Fatalf("full message: %v", err)
	}
}

func TestDNSQueryNameTCP(t *testing.T) {
	msg := dnsQuery(7, "Mail.Example.net")
	framed := tcpFrame(msg)
	tests := []struct {
		name    string
		payload []byte
		want    string
		err     error
	}{
		{"whole", framed, "mail.example.net", nil},
		{"two pipelined", append(append([]byte{}, framed...), tcpFrame(dnsQuery(8, "other.example"))...), "mail.example.net", nil},
		{"length only", framed[:2], "", ErrIncomplete},
		{"one byte", framed[:1], "", ErrIncomplete},
		{"empty", nil, "", ErrIncomplete},
		{"header split", framed[:8], "", ErrIncomplete},
		{"name split", framed[:20], "", ErrIncomplete},
		// The additional section (EDNS) follows in a later segment, but
		// the question is already whole.
		{"question whole, rest later", append(tcpFrame(append(append([]byte{}, msg...), make([]byte, 11)...)), 0)[:2+len(msg)], "mail.example.net", nil},
		{"length shorter than question", append([]byte{0, 14}, msg...), "", ErrTruncated},
		{"zero length", append([]byte{0, 0}, msg...), "", ErrTruncated},
		{"response", func() []byte { f := tcpFrame(msg); f[4] |= 0x80; return f }(), "", ErrNotQuery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DNSQueryNameTCP(tt.payload, nil)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && string(got) != tt.want {
				t.Fatalf("name = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDNSQueryNameTCPEveryPrefix(t *testing.T) {
	framed := tcpFrame(dnsQuery(3, "split.example"))
	for n := range len(framed) {
		if _, err := DNSQueryNameTCP(framed[:n], nil); err != ErrIncomplete {
			t.Fatalf("prefix of %d bytes: err = %v, want ErrIncomplete", n, err)
		}
	}
}

func TestDNSQueryNameNoAllocs(t *testing.T) {
	msg := dnsQuery(1, "www.Example.COM")
	framed := tcpFrame(msg)
	dst := make([]byte, 0, MaxNameLen)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := DNSQueryName(msg, dst); err != nil {
			t.Fatal(err)
		}
		if _, err := DNSQueryNameTCP(framed, dst); err != nil {
			t.Fatal(err)
		}
		if _, err := DNSQueryName(msg[:5], dst); err == nil {
			t.Fatal("no error")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func TestMaxNameLenIsEnough(t *testing.T) {
	// Four labels of bytes that all need escaping, 255 wire bytes.
	msg := dnsHeader()
	for _, n := range []int{63, 63, 63, 61} {
		msg = append(msg, byte(n))
		msg = append(msg, bytes.Repeat([]byte{0xff}, n)...)
	}
	msg = append(msg, 0, 0, 1, 0, 1)
	got, err := DNSQueryName(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxNameLen {
		t.Fatalf("len = %d, want MaxNameLen %d", len(got), MaxNameLen)
	}
}

func BenchmarkDNSQueryName(b *testing.B) {
	benchQueryName(b, DNSQueryName, dnsQuery(1, "www.tracker.ads.example.com"))
}

func BenchmarkDNSQueryNameTCP(b *testing.B) {
	benchQueryName(b, DNSQueryNameTCP, tcpFrame(dnsQuery(1, "www.tracker.ads.example.com")))
}

// benchQueryName has read read the name out of payload, b.N times.
func benchQueryName(b *testing.B, read func(payload, dst []byte) ([]byte, error), payload []byte) {
	dst := make([]byte, 0, MaxNameLen)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := read(payload, dst); err != nil {
			b.Fatal(err)
		}
	}
}
