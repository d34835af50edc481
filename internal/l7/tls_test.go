package l7

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"testing"
)

func TestTLSServerNameReal(t *testing.T) {
	for _, name := range []string{"example.com", "Mixed.Case.Example", "a.b.c.d.e.f.example.org"} {
		hello := realClientHello(t, name)
		got, err := TLSServerName(hello)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(got) != name {
			t.Fatalf("got %q, want %q", got, name)
		}
	}
}

func TestTLSServerNameRealConfigs(t *testing.T) {
	for _, cfg := range []*tls.Config{
		{ServerName: "tls12.example", MaxVersion: tls.VersionTLS12},
		{ServerName: "tls10.example", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10},
		{ServerName: "alpn.example", NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}},
		{ServerName: "classic.example", CurvePreferences: []tls.CurveID{tls.CurveP256}},
	} {
		cfg.InsecureSkipVerify = true
		hello := realClientHelloConfig(t, cfg)
		got, err := TLSServerName(hello)
		if err != nil || string(got) != cfg.ServerName {
			t.Errorf("%s (%d bytes): %q, %v", cfg.ServerName, len(hello), got, err)
		}
	}
}

func TestTLSServerNameRealNoSNI(t *testing.T) {
	// crypto/tls sends no server_name for an IP address (RFC 6066).
	if _, err := TLSServerName(realClientHello(t, "192.0.2.1")); err != ErrNoSNI {
		t.Fatalf("err = %v, want ErrNoSNI", err)
	}
}

func TestTLSServerName(t *testing.T) {
	other := ext{typ: 10, data: []byte{0, 2, 0, 29}}
	tests := []struct {
		name  string
		hello []byte
		want  string
		err   error
	}{
		{"only sni", buildHello(sniExt("host.example")), "host.example", nil},
		{"sni after others", buildHello(other, ext{typ: 43, data: []byte{2, 3, 4}}, sniExt("late.example")), "late.example", nil},
		{"case kept", buildHello(sniExt("UP.Example")), "UP.Example", nil},
		{"no extensions block", buildHello(), "", ErrNoSNI},
		{"extensions without sni", buildHello(other), "", ErrNoSNI},
		{"empty extensions", tlsRecord(append(helloBody(nil), 0, 0)), "", ErrNoSNI},
		{"sni list without host_name", buildHello(ext{typ: 0, data: []byte{0, 4, 1, 0, 1, 'x'}}), "", ErrNoSNI},
		{"two host_names", buildHello(sniExt("a.example", "b.example")), "", ErrMalformed},
		{"duplicate sni extension", buildHello(sniExt("a.example"), sniExt("b.example")), "", ErrMalformed},
		{"empty host_name", buildHello(sniExt("")), "", ErrMalformed},
		{"sni list length lies", buildHello(ext{typ: 0, data: []byte{0, 9, 0, 0, 1, 'x'}}), "", ErrMalformed},
		{"sni name length lies", buildHello(ext{typ: 0, data: []byte{0, 4, 0, 0, 9, 'x'}}), "", ErrMalformed},
		{"empty sni extension", buildHello(ext{typ: 0}), "", ErrMalformed},
		{"not handshake", append([]byte{23}, buildHello(sniExt("x"))[1:]...), "", ErrNotTLS},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "", ErrNotTLS},
		{"ssl2 style version", func() []byte { h := buildHello(sniExt("x")); h[1] = 2; return h }(), "", ErrNotTLS},
		{"server hello", func() []byte { h := buildHello(sniExt("x")); h[5] = 2; return h }(), "", ErrNotTLS},
		{"record too long", func() []byte { h := buildHello(sniExt("x")); h[3], h[4] = 0x40, 1; return h }(), "", ErrMalformed},
		{"record shorter than handshake header", []byte{22, 3, 1, 0, 3, 1, 0, 0, 9}, "", ErrMalformed},
		{"session id too long", func() []byte { h := buildHello(sniExt("x")); h[9+34] = 33; return h }(), "", ErrMalformed},
		{"odd cipher suites", func() []byte { h := buildHello(sniExt("x")); h[9+34+33+1] = 3; return h }(), "", ErrMalformed},
		{"no compression methods", tlsRecord(append(helloBody(nil)[:len(helloBody(nil))-2], 0)), "", ErrMalformed},
		{"extensions longer than hello", func() []byte {
			b := helloBody([]ext{sniExt("x.example")})
			binary.BigEndian.PutUint16(b[len(helloBody(nil)):], 500)
			return tlsRecord(b)
		}(), "", ErrMalformed},
		{"extension longer than block", func() []byte {
			b := helloBody([]ext{other, sniExt("x.example")})
			binary.BigEndian.PutUint16(b[len(helloBody(nil))+4:], 200)
			return tlsRecord(b)
		}(), "", ErrMalformed},
		{"hello length beyond record", func() []byte {
			h := buildHello(other)
			h[7]++ // the hello claims 256 more bytes than its extensions hold
			return h
		}(), "", ErrMalformed},
		{"trailing bytes after extensions", func() []byte {
			b := append(helloBody([]ext{sniExt("x.example")}), 0)
			return tlsRecord(b)
		}(), "", ErrMalformed},
		{"sni before split", func() []byte {
			h := buildHello(sniExt("early.example"), ext{typ: 21, data: make([]byte, 3000)})
			return h[:len(h)-2000]
		}(), "early.example", nil},
		{"sni after split", func() []byte {
			h := buildHello(ext{typ: 21, data: make([]byte, 3000)}, sniExt("late.example"))
			return h[:1500]
		}(), "", ErrIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TLSServerName(tt.hello)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && string(got) != tt.want {
				t.Fatalf("name = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTLSServerNameSplitAcrossRecords(t *testing.T) {
	// The hello's first 60 bytes in one record, the rest in a second: the
	// first record alone cannot name the server, and the parser must not
	// read the second record's header as hello bytes.
	h := buildHello(sniExt("split.example"))
	hs := h[5:]
	first := append([]byte{22, 3, 1, 0, 60}, hs[:60]...)
	second := append([]byte{22, 3, 1, 0, byte(len(hs) - 60)}, hs[60:]...)
	if _, err := TLSServerName(append(first, second...)); err != ErrIncomplete {
		t.Fatalf("err = %v, want ErrIncomplete", err)
	}
}

func TestTLSServerNameEveryPrefix(t *testing.T) {
	for _, hello := range [][]byte{
		buildHello(sniExt("prefix.example")),
		realClientHello(t, "prefix.example"),
	} {
		// The name is known once its bytes are present; before that the
		// only honest answer is ErrIncomplete.
		full, err := TLSServerName(hello)
		if err != nil {
			t.Fatal(err)
		}
		end := bytes.Index(hello, full) + len(full)
		for n := range len(hello) {
			got, err := TLSServerName(hello[:n])
			switch {
			case n < end && err != ErrIncomplete:
				t.Fatalf("prefix %d of %d: got %q, %v; want ErrIncomplete", n, len(hello), got, err)
			case n >= end && (err != nil || string(got) != "prefix.example"):
				t.Fatalf("prefix %d of %d: got %q, %v; want the name", n, len(hello), got, err)
			}
		}
	}
}

func TestTLSServerNameNoAllocs(t *testing.T) {
	hello := realClientHello(t, "www.example.com")
	var dst [64]byte
	allocs := testing.AllocsPerRun(100, func() {
		name, err := TLSServerName(hello)
		if err != nil {
			t.Fatal(err)
		}
		_ = ToLowerASCII(dst[:0], name)
		if _, err := TLSServerName(hello[:100]); err != ErrIncomplete {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func TestTLSRecordLen(t *testing.T) {
	hello := realClientHello(t, "www.example.com")
	tests := []struct {
		name    string
		payload []byte
		want    int
		err     error
	}{
		{"whole", hello, len(hello), nil},
		{"first segment", hello[:100], len(hello), nil},
		{"header only", hello[:5], len(hello), nil},
		{"short header", hello[:4], 0, ErrIncomplete},
		{"empty", nil, 0, ErrIncomplete},
		{"not tls", []byte("SSH-2.0-x"), 0, ErrNotTLS},
		{"bad version", []byte{22, 2, 0, 0, 10}, 0, ErrNotTLS},
		{"record too long", []byte{22, 3, 1, 0x40, 1}, 0, ErrMalformed},
	}
	for _, tt := range tests {
		got, err := TLSRecordLen(tt.payload)
		if err != tt.err || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
	// Buffering that many bytes is enough for a hello that fits a record.
	n, _ := TLSRecordLen(hello[:5])
	if name, err := TLSServerName(hello[:n]); err != nil || string(name) != "www.example.com" {
		t.Fatalf("after buffering %d bytes: %q, %v", n, name, err)
	}
}

func TestToLowerASCII(t *testing.T) {
	got := ToLowerASCII([]byte("x:"), []byte("AbC-Z\xc3\x84@[`{"))
	if string(got) != "x:abc-z\xc3\x84@[`{" {
		t.Fatalf("got %q", got)
	}
}

func BenchmarkTLSServerName(b *testing.B) {
	hello := realClientHello(b, "www.example.com")
	b.ReportAllocs()
	b.SetBytes(int64(len(hello)))
	for b.Loop() {
		if _, err := TLSServerName(hello); err != nil {
			b.Fatal(err)
		}
	}
}
