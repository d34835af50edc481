package l7

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// dnsSeeds are real and hostile DNS queries; they seed the fuzzers here and
// the corpus committed under testdata/fuzz.
func dnsSeeds() [][]byte {
	edns := append(dnsQuery(0x1111, "www.example.com"), 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0)
	edns[11] = 1 // ARCOUNT
	return [][]byte{
		dnsQuery(1, "www.example.com"),
		dnsQuery(2, ""),
		dnsQuery(3, "MiXeD.Case.Example"),
		edns,
		append(dnsHeader(), 3, 'a', '.', 'b', 3, 0, '\\', 0xff, 0, 0, 1, 0, 1),
		append([]byte{0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 1, 'x', 0xc0, 5, 0, 1, 0, 1),
		append(dnsHeader(), 0xc0, 12, 0, 1, 0, 1),
		append(dnsHeader(), 1, 'a', 0xc0, 12, 0, 1, 0, 1),
		append([]byte{0x12, 0x34, 0, 0, 0, 1, 0xc0, 10, 0xc0, 6, 0, 0}, 0xc0, 8, 0, 1, 0, 1),
		append(dnsHeader(), 0x41, 1, 2, 0, 0, 1, 0, 1),
		dnsQuery(4, string(bytes.Repeat([]byte("abcdefgh."), 28))),
		dnsQuery(5, "truncated.example")[:20],
	}
}

// tlsSeeds are real crypto/tls ClientHellos and hand-built edge cases.
func tlsSeeds(tb testing.TB) [][]byte {
	split := buildHello(ext{typ: 21, data: make([]byte, 600)}, sniExt("late.example"))
	return [][]byte{
		realClientHello(tb, "www.example.com"),
		realClientHello(tb, "Upper.Example.ORG"),
		realClientHello(tb, "192.0.2.1"),
		buildHello(sniExt("host.example")),
		buildHello(),
		buildHello(sniExt("a.example", "b.example")),
		buildHello(sniExt("a.example"), sniExt("b.example")),
		buildHello(ext{typ: 0, data: []byte{0, 9, 0, 0, 1, 'x'}}),
		split[:300],
		[]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
	}
}

func FuzzDNSQueryName(f *testing.F) {
	for _, s := range dnsSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		dst := []byte("prefix")
		got, err := DNSQueryName(msg, dst)
		if err != nil {
			if string(got) != "prefix" {
				t.Fatalf("dst changed on error %v: %q", err, got)
			}
			return
		}
		checkPresentationName(t, got[len("prefix"):])
		// The same message over TCP names the same question.
		tcp, err := DNSQueryNameTCP(tcpFrame(msg), nil)
		if len(msg) <= 0xffff && (err != nil || !bytes.Equal(tcp, got[len("prefix"):])) {
			t.Fatalf("TCP: %q, %v; UDP: %q", tcp, err, got[len("prefix"):])
		}
	})
}

func FuzzDNSQueryNameTCP(f *testing.F) {
	for _, s := range dnsSeeds() {
		f.Add(tcpFrame(s))
	}
	f.Add([]byte{0, 40, 0x12})
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := DNSQueryNameTCP(payload, make([]byte, 0, MaxNameLen))
		if err != nil {
			return
		}
		checkPresentationName(t, got)
		if cap(got) != MaxNameLen {
			t.Fatalf("dst of capacity MaxNameLen was reallocated for %q", got)
		}
	})
}

// checkPresentationName asserts what DNSQueryName promises about its result.
func checkPresentationName(t *testing.T, name []byte) {
	t.Helper()
	if len(name) > MaxNameLen {
		t.Fatalf("name of %d bytes exceeds MaxNameLen", len(name))
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f || ('A' <= c && c <= 'Z') {
			t.Fatalf("name %q holds byte %#x", name, c)
		}
	}
	if bytes.HasPrefix(name, []byte(".")) || bytes.HasSuffix(name, []byte(".")) || bytes.Contains(name, []byte("..")) {
		t.Fatalf("name %q has an empty label", name)
	}
}

func FuzzTLSServerName(f *testing.F) {
	for _, s := range tlsSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		name, err := TLSServerName(payload)
		if err != nil {
			if name != nil {
				t.Fatalf("name %q with error %v", name, err)
			}
			return
		}
		if len(name) == 0 {
			t.Fatal("empty name without error")
		}
		end := -1
		for i := range len(payload) - len(name) + 1 {
			if &payload[i] == &name[0] {
				end = i + len(name)
			}
		}
		if end < 0 || cap(name) != len(name) {
			t.Fatalf("name %q is not a capacity-limited subslice of the payload", name)
		}
		// Cut where the name ends, the parser either has it already or
		// waits for the rest of the server_name extension (later entries
		// of its list); one byte earlier it must wait.
		if got, err := TLSServerName(payload[:end]); err != ErrIncomplete && (err != nil || !bytes.Equal(got, name)) {
			t.Fatalf("cut at the name: %q, %v; want %q or ErrIncomplete", got, err, name)
		}
		if _, err := TLSServerName(payload[:end-1]); err != ErrIncomplete {
			t.Fatalf("cut inside the name: %v, want ErrIncomplete", err)
		}
		if n, err := TLSRecordLen(payload); err != nil || n < end {
			t.Fatalf("TLSRecordLen = %d, %v; the name ends at %d", n, err, end)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz from the seeds above when
// L7_WRITE_CORPUS=1; otherwise it checks that the committed corpus exists.
func TestWriteFuzzCorpus(t *testing.T) {
	tcp := make([][]byte, 0, len(dnsSeeds()))
	for _, s := range dnsSeeds() {
		tcp = append(tcp, tcpFrame(s))
	}
	sets := map[string][][]byte{
		"FuzzDNSQueryName":    dnsSeeds(),
		"FuzzDNSQueryNameTCP": tcp,
		"FuzzTLSServerName":   tlsSeeds(t),
	}
	write := os.Getenv("L7_WRITE_CORPUS") == "1"
	for target, seeds := range sets {
		dir := filepath.Join("testdata", "fuzz", target)
		if !write {
			entries, err := os.ReadDir(dir)
			if err != nil || len(entries) < len(seeds) {
				t.Errorf("%s: committed corpus missing or short (%v); run with L7_WRITE_CORPUS=1", dir, err)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
