package l7

import (
	"bytes"
	"errors"
	"testing"
)

func TestStreamInOrderAndRetransmit(t *testing.T) {
	var s Stream
	s.Start(1000, 64)
	if n, err := s.Add(1000, []byte("hello ")); n != 6 || err != nil {
		t.Fatalf("Add = %d, %v", n, err)
	}
	// A retransmission of what the stream has adds nothing; one that
	// overlaps adds only the new tail, and the first copy wins.
	if n, _ := s.Add(1000, []byte("HELLO ")); n != 0 {
		t.Fatalf("retransmission added %d bytes", n)
	}
	if n, _ := s.Add(1003, []byte("LO world")); n != 5 {
		t.Fatalf("overlap added %d bytes, want 5", n)
	}
	if got := string(s.Bytes()); got != "hello world" {
		t.Fatalf("Bytes = %q", got)
	}
	if s.Next() != 1011 {
		t.Fatalf("Next = %d", s.Next())
	}
}

func TestStreamOutOfOrder(t *testing.T) {
	var s Stream
	isn := uint32(0xfffffffe) // the sequence space wraps inside the stream
	s.Start(isn, 64)
	if n, err := s.Add(isn+6, []byte("world")); n != 0 || err != nil {
		t.Fatalf("ahead of the hole: %d, %v", n, err)
	}
	if n, err := s.Add(isn+3, []byte("lo ")); n != 0 || err != nil {
		t.Fatalf("second gap: %d, %v", n, err)
	}
	if n, err := s.Add(isn, []byte("hel")); n != 11 || err != nil {
		t.Fatalf("filling the hole: %d, %v", n, err)
	}
	if got := string(s.Bytes()); got != "hello world" {
		t.Fatalf("Bytes = %q", got)
	}
}

func TestStreamBounds(t *testing.T) {
	var s Stream
	s.Start(0, 8)
	if _, err := s.Add(0, []byte("123456789")); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("over the limit: %v", err)
	}
	if len(s.Bytes()) != 0 {
		t.Fatal("a refused segment changed the stream")
	}
	s.Start(0, 1<<10)
	for i := range maxGaps {
		if _, err := s.Add(uint32(10+10*i), []byte("x")); err != nil {
			t.Fatalf("gap %d: %v", i, err)
		}
	}
	// The same kept segment again is a retransmission, not a new gap.
	if _, err := s.Add(10, []byte("x")); err != nil {
		t.Fatalf("retransmitted gap: %v", err)
	}
	if _, err := s.Add(100, []byte("x")); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("one gap too many: %v", err)
	}
	// Consumed bytes no longer count.
	s.Start(0, 8)
	s.Add(0, []byte("12345678"))
	s.Consume(8)
	if _, err := s.Add(8, []byte("abcdefgh")); err != nil {
		t.Fatalf("after consuming: %v", err)
	}
}

func TestStreamRewind(t *testing.T) {
	var s Stream
	s.Start(0, 64)
	s.Add(0, []byte("ab"))
	s.Add(5, []byte("fg")) // kept ahead of the hole
	s.Consume(1)
	m := s.Mark()
	s.Add(2, []byte("cde")) // fills the hole and takes the kept segment
	s.Consume(3)
	if got := string(s.Bytes()); got != "efg" {
		t.Fatalf("before rewind: %q", got)
	}
	s.Rewind(m)
	if got := string(s.Bytes()); got != "b" || s.Next() != 2 {
		t.Fatalf("after rewind: %q next %d", got, s.Next())
	}
	// The kept segment is kept again: the hole fills as before.
	s.Add(2, []byte("cde"))
	if got := string(s.Bytes()); got != "bcdefg" {
		t.Fatalf("after the retransmission: %q", got)
	}
}

// TestTLSHelloNameEverySplit feeds a ClientHello whose name comes late to a
// stream in two segments, split at every offset, in both orders: the name is
// found exactly when the last byte arrives.
func TestTLSHelloNameEverySplit(t *testing.T) {
	hello := buildHello(ext{typ: 21, data: make([]byte, 1500)}, sniExt("Late.Example"))
	for cut := 1; cut < len(hello); cut += 7 {
		for _, reverse := range []bool{false, true} {
			var s Stream
			s.Start(7, TLSHelloLimit)
			first, second := uint32(7), uint32(7+cut)
			a, b := hello[:cut], hello[cut:]
			if reverse {
				first, second, a, b = second, first, b, a
			}
			s.Add(first, a)
			if _, st := TLSHelloName(s.Bytes()); st != NamePending {
				t.Fatalf("cut %d reverse %v: after one segment %v, want pending", cut, reverse, st)
			}
			s.Add(second, b)
			name, st := TLSHelloName(s.Bytes())
			if st != NameFound || string(name) != "Late.Example" {
				t.Fatalf("cut %d reverse %v: %q %v", cut, reverse, name, st)
			}
		}
	}
}

func TestTLSHelloNameStates(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want NameState
	}{
		{"empty", nil, NamePending},
		{"header", buildHello(sniExt("a.example"))[:3], NamePending},
		{"no sni", buildHello(), NameAbsent},
		{"http", []byte("GET / HTTP/1.1\r\n"), NameAbsent},
		{"server hello", []byte{22, 3, 3, 0, 50, 2, 0, 0, 46}, NameAbsent},
		{"bad record length", []byte{22, 3, 1, 0xff, 0xff, 1}, NameFailed},
		{"duplicate sni", buildHello(sniExt("a.example"), sniExt("b.example")), NameFailed},
		{"real", realClientHello(t, "real.example"), NameFound},
	}
	for _, tt := range tests {
		if _, st := TLSHelloName(tt.b); st != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, st, tt.want)
		}
	}
}

// FuzzStream checks that any segmentation, order and duplication of a byte
// string reassembles to that string, or is refused as over the bound.
func FuzzStream(f *testing.F) {
	f.Add([]byte("a stream of bytes cut into segments"), []byte{3, 1, 7, 0, 2})
	f.Add(bytes.Repeat([]byte{0x16}, 300), []byte{255, 1, 128, 3})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var s Stream
		const isn = uint32(0xffffff00)
		s.Start(isn, 1<<12)
		// Segments from the cut list, sent in an order the list also
		// scrambles, each sent twice.
		type seg struct{ off, end int }
		var segs []seg
		off := 0
		for i := 0; off < len(data); i++ {
			n := 1
			if i < len(cuts) {
				n = int(cuts[i])%64 + 1
			}
			segs = append(segs, seg{off, min(off+n, len(data))})
			off += n
		}
		for i := range segs {
			if i < len(cuts) && cuts[i]&1 == 1 && i+1 < len(segs) {
				segs[i], segs[i+1] = segs[i+1], segs[i]
			}
		}
		limited := false
		for _, g := range append(segs, segs...) {
			if _, err := s.Add(isn+uint32(g.off), data[g.off:g.end]); err != nil {
				if !errors.Is(err, ErrStreamLimit) {
					t.Fatal(err)
				}
				limited = true
			}
		}
		if limited {
			if len(s.Bytes()) > len(data) || !bytes.Equal(s.Bytes(), data[:len(s.Bytes())]) {
				t.Fatalf("a prefix was wrong: %q", s.Bytes())
			}
			return
		}
		if !bytes.Equal(s.Bytes(), data) {
			t.Fatalf("reassembled %q, want %q", s.Bytes(), data)
		}
	})
}
