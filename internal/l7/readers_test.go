package l7

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func names(t *testing.T, msg []byte) ([]string, error) {
	t.Helper()
	q, err := NewDNSQuestions(msg)
	if err != nil {
		return nil, err
	}
	var out []string
	for n, ok := q.Next(nil); ok; n, ok = q.Next(nil) {
		out = append(out, string(n))
	}
	return out, q.Err()
}

// dnsQueryMulti is a query with one question per name.
func dnsQueryMulti(names ...string) []byte {
	msg := []byte{0, 9, 0x01, 0x00, 0, byte(len(names)), 0, 0, 0, 0, 0, 0}
	for _, n := range names {
		msg = appendWireName(msg, n)
		msg = append(msg, 0, 1, 0, 1)
	}
	return msg
}

func TestDNSQuestions(t *testing.T) {
	got, err := names(t, dnsQueryMulti("good.example", "BAD.example", "x.good.example"))
	if err != nil || strings.Join(got, ",") != "good.example,bad.example,x.good.example" {
		t.Fatalf("got %q, %v", got, err)
	}
	// A QDCOUNT larger than the questions present ends in ErrTruncated,
	// after the questions that are there.
	m := dnsQueryMulti("a.example")
	m[5] = 200
	got, err = names(t, m)
	if !errors.Is(err, ErrTruncated) || len(got) != 1 {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := NewDNSQuestions(dnsHeader()[:5]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short: %v", err)
	}
}

func TestDNSReaderSplitPrefix(t *testing.T) {
	stream := append(tcpFrame(dnsQuery(1, "good.example")), tcpFrame(dnsQuery(2, "bad.example"))...)
	// Every way to cut the stream in two segments: the prefix alone, the
	// prefix split, a message split.
	for cut := 0; cut <= len(stream); cut++ {
		var s Stream
		s.Start(100, StreamLimit)
		var r DNSReader
		var all []string
		for _, seg := range []struct {
			off  int
			data []byte
		}{{0, stream[:cut]}, {cut, stream[cut:]}} {
			s.Add(uint32(100+seg.off), seg.data)
			msgs, st := r.Read(&s, nil)
			if st == NameFailed {
				t.Fatalf("cut %d: failed", cut)
			}
			for _, m := range msgs {
				n, _ := names(t, m)
				all = append(all, n...)
			}
		}
		if strings.Join(all, ",") != "good.example,bad.example" {
			t.Fatalf("cut %d: names %q", cut, all)
		}
	}
}

func TestDNSReaderFails(t *testing.T) {
	var s Stream
	s.Start(0, 64)
	var r DNSReader
	s.Add(0, []byte{0, 0, 1, 2})
	if _, st := r.Read(&s, nil); st != NameFailed || !r.Failed() {
		t.Fatalf("zero length: %v", st)
	}
	s.Start(0, 64)
	r = DNSReader{}
	s.Add(0, []byte{0, 200, 1})
	if _, st := r.Read(&s, nil); st != NameFailed {
		t.Fatalf("message longer than the bound: %v", st)
	}
}

func TestParseHTTPRequestHosts(t *testing.T) {
	tests := []struct {
		head string
		want []string
		err  error
	}{
		{"GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n", []string{"blocked.example"}, nil},
		{"GET / HTTP/1.1\r\nHost:blocked.example\r\n\r\n", []string{"blocked.example"}, nil},
		{"GET / HTTP/1.1\r\nhOsT: \t BLOCKED.example:8080 \t\r\n\r\n", []string{"BLOCKED.example"}, nil},
		{"GET / HTTP/1.1\nHost: bare-lf.example\n\n", []string{"bare-lf.example"}, nil},
		{"GET / HTTP/1.1\r\nHost : spaced.example\r\n\r\n", []string{"spaced.example"}, nil},
		{"GET http://user@abs.example:81/x HTTP/1.1\r\nHost: other.example\r\n\r\n", []string{"abs.example", "other.example"}, nil},
		{"GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", []string{"[2001:db8::1]"}, nil},
		{"GET / HTTP/1.0\r\n\r\n", nil, nil},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nHost: c\r\nHost: d\r\n\r\n", nil, ErrBadHTTP},
		{"GET / HTTP/1.1\r\nHost: a.example\r\n", nil, ErrIncomplete},
		{"GE", nil, ErrIncomplete},
		{"", nil, ErrIncomplete},
		{"\x16\x03\x01\x02\x00", nil, ErrNotHTTP},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nil, ErrNotHTTP},
		{"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", nil, ErrBadHTTP},
		{"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", HTTPHeadLimit) + "\r\n\r\n", nil, ErrHeadTooLong},
	}
	for _, tt := range tests {
		req, n, err := ParseHTTPRequest([]byte(tt.head))
		if !errors.Is(err, tt.err) {
			t.Errorf("%q: err %v, want %v", tt.head, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		var got []string
		for _, h := range req.Hosts[:req.NHosts] {
			got = append(got, string(h))
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") || n != len(tt.head) {
			t.Errorf("%q: hosts %q n %d", tt.head, got, n)
		}
	}
}

// TestHTTPReaderKeepAlive reads a keep-alive connection of requests with
// bodies of both kinds, byte by byte: every Host is seen once, body bytes
// that look like requests are skipped.
func TestHTTPReaderKeepAlive(t *testing.T) {
	fake := "GET / HTTP/1.1\r\nHost: in-body.example\r\n\r\n"
	stream := "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n" +
		"POST /x HTTP/1.1\r\nHost: b.example\r\nContent-Length: " + itoa(len(fake)) + "\r\n\r\n" + fake +
		"POST /y HTTP/1.1\r\nHost: c.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
		"5;ext=1\r\nhello\r\n" + itoa16(len(fake)) + "\r\n" + fake + "\r\n0\r\nTrailer: x\r\n\r\n" +
		"GET / HTTP/1.1\r\nHost: d.example\r\n\r\n"
	for _, step := range []int{1, 3, 17, len(stream)} {
		var s Stream
		s.Start(0, StreamLimit)
		var r HTTPReader
		var got []string
		for off := 0; off < len(stream); off += step {
			s.Add(uint32(off), []byte(stream[off:min(off+step, len(stream))]))
			hosts, st := r.Read(&s, nil)
			if st == NameFailed || st == NameAbsent {
				t.Fatalf("step %d at %d: %v", step, off, st)
			}
			for _, h := range hosts {
				got = append(got, string(h))
			}
		}
		if strings.Join(got, ",") != "a.example,b.example,c.example,d.example" {
			t.Fatalf("step %d: hosts %q", step, got)
		}
	}
}

func TestHTTPReaderNotHTTP(t *testing.T) {
	var s Stream
	s.Start(0, StreamLimit)
	var r HTTPReader
	s.Add(0, realClientHello(t, "x.example"))
	if _, st := r.Read(&s, nil); st != NameAbsent || r.Done() != NameAbsent {
		t.Fatalf("a TLS stream: %v", st)
	}
}

func itoa(n int) string   { return string(appendInt(nil, n, 10)) }
func itoa16(n int) string { return string(appendInt(nil, n, 16)) }

func appendInt(b []byte, n, base int) []byte {
	const digits = "0123456789abcdef"
	if n >= base {
		b = appendInt(b, n/base, base)
	}
	return append(b, digits[n%base])
}

func FuzzParseHTTPRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a.example:80\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET http://a@b.example/ HTTP/1.1\nhost:c\n\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, n, err := ParseHTTPRequest(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) || req.NHosts > maxHTTPHosts || req.ContentLength < 0 {
			t.Fatalf("n %d of %d, %d hosts, length %d", n, len(b), req.NHosts, req.ContentLength)
		}
		for _, h := range req.Hosts[:req.NHosts] {
			if !bytes.Contains(b[:n], h) {
				t.Fatalf("host %q is not in the head", h)
			}
		}
	})
}

// FuzzHTTPReader checks that reading a stream in two segments finds the
// same hosts as reading it whole.
func FuzzHTTPReader(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxxGET / HTTP/1.1\r\nHost: b\r\n\r\n"), 20)
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxx\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n"), 50)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 || cut > len(b) {
			return
		}
		read := func(parts ...[]byte) ([]string, NameState) {
			var s Stream
			s.Start(0, StreamLimit)
			var r HTTPReader
			var got []string
			var st NameState
			off := 0
			for _, p := range parts {
				if _, err := s.Add(uint32(off), p); err != nil {
					return got, NameFailed
				}
				off += len(p)
				var hosts [][]byte
				hosts, st = r.Read(&s, nil)
				for _, h := range hosts {
					got = append(got, string(h))
				}
			}
			if d := r.Done(); d != NameUnknown {
				st = d
			}
			return got, st
		}
		whole, st1 := read(b)
		split, st2 := read(b[:cut], b[cut:])
		if st1 == NameFailed || st2 == NameFailed || st1 == NameAbsent || st2 == NameAbsent {
			return // where a stream breaks can depend on the cut (a head's bound)
		}
		if strings.Join(whole, "\x00") != strings.Join(split, "\x00") {
			t.Fatalf("whole %q, split at %d %q", whole, cut, split)
		}
	})
}

// FuzzDNSReader checks the same for DNS over TCP.
func FuzzDNSReader(f *testing.F) {
	f.Add(append(tcpFrame(dnsQuery(1, "a.example")), tcpFrame(dnsQueryMulti("b.example", "c.example"))...), 1)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 || cut > len(b) {
			return
		}
		read := func(parts ...[]byte) (string, bool) {
			var s Stream
			s.Start(0, StreamLimit)
			var r DNSReader
			var got []string
			off := 0
			for _, p := range parts {
				if _, err := s.Add(uint32(off), p); err != nil {
					return "", false
				}
				off += len(p)
				msgs, _ := r.Read(&s, nil)
				for _, m := range msgs {
					q, err := NewDNSQuestions(m)
					if err != nil {
						got = append(got, err.Error())
						continue
					}
					for n, ok := q.Next(nil); ok; n, ok = q.Next(nil) {
						got = append(got, string(n))
					}
				}
			}
			return strings.Join(got, "\x00"), !r.Failed()
		}
		whole, ok1 := read(b)
		split, ok2 := read(b[:cut], b[cut:])
		if ok1 && ok2 && whole != split {
			t.Fatalf("whole %q, split at %d %q", whole, cut, split)
		}
	})
}

func FuzzDNSQuestions(f *testing.F) {
	for _, s := range dnsSeeds() {
		f.Add(s)
	}
	f.Add(dnsQueryMulti("a.example", "b.example"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		q, err := NewDNSQuestions(msg)
		if err != nil {
			return
		}
		n := 0
		for name, ok := q.Next(nil); ok; name, ok = q.Next(nil) {
			if len(name) > MaxNameLen {
				t.Fatalf("name of %d bytes", len(name))
			}
			n++
		}
		if n*5 > len(msg) {
			t.Fatalf("%d questions in %d bytes", n, len(msg))
		}
		// The first question is the one DNSQueryName reads.
		first, err := DNSQueryName(msg, nil)
		q2, _ := NewDNSQuestions(msg)
		if name, ok := q2.Next(nil); ok != (err == nil) || ok && string(name) != string(first) {
			t.Fatalf("first question %q %v, DNSQueryName %q %v", name, ok, first, err)
		}
	})
}
