package nlmsg

import (
	"bytes"
	"testing"
)

// msg builds a message of type typ with body, nlmsg_len set to n (the
// real length when n is 0).
func msg(typ uint16, body []byte, n int) []byte {
	b := make([]byte, HdrLen, HdrLen+len(body))
	if n == 0 {
		n = HdrLen + len(body)
	}
	PutHeader(b, n, typ, 0, 7)
	return append(b, body...)
}

func TestNext(t *testing.T) {
	two := append(msg(1, []byte{1, 2, 3, 0}, HdrLen+3), msg(2, []byte{9}, 0)...)
	m, rest, ok := Next(two, false)
	if !ok || m.Type != 1 || m.Len != HdrLen+3 || !bytes.Equal(m.Body, []byte{1, 2, 3}) || m.Cut {
		t.Fatalf("first: %+v ok=%v", m, ok)
	}
	m, rest, ok = Next(rest, false)
	if !ok || m.Type != 2 || !bytes.Equal(m.Body, []byte{9}) || len(rest) != 0 {
		t.Fatalf("second: %+v rest=%d ok=%v", m, len(rest), ok)
	}

	long := msg(3, []byte{1, 2}, 100)
	if _, _, ok := Next(long, false); ok {
		t.Error("a message past the buffer parsed without cutOK")
	}
	m, rest, ok = Next(long, true)
	if !ok || !m.Cut || !bytes.Equal(m.Body, []byte{1, 2}) || rest != nil {
		t.Errorf("cut: %+v rest=%v ok=%v", m, rest, ok)
	}
	for _, b := range [][]byte{make([]byte, HdrLen-1), msg(1, nil, HdrLen-1)} {
		if _, _, ok := Next(b, true); ok {
			t.Errorf("Next(% x) ok", b)
		}
	}
}

func TestNextAttr(t *testing.T) {
	b := make([]byte, 16)
	PutAttrBE32(b, 0x8000|5, 0x01020304) // NLA_F_NESTED is stripped
	PutAttrHdr(b[8:], AttrHdrLen+1, 6)
	b[12] = 0xff
	typ, v, rest, ok := NextAttr(b)
	if !ok || typ != 5 || !bytes.Equal(v, []byte{1, 2, 3, 4}) || len(rest) != 8 {
		t.Fatalf("first: %d % x rest=%d ok=%v", typ, v, len(rest), ok)
	}
	typ, v, rest, ok = NextAttr(rest)
	if !ok || typ != 6 || !bytes.Equal(v, []byte{0xff}) || len(rest) != 0 {
		t.Fatalf("second: %d % x rest=%d ok=%v", typ, v, len(rest), ok)
	}
	PutAttrHdr(b, 17, 1)
	if _, _, _, ok := NextAttr(b); ok {
		t.Error("an attribute past the buffer parsed")
	}
	PutAttrHdr(b, 3, 1)
	if _, _, _, ok := NextAttr(b); ok {
		t.Error("an attribute shorter than its header parsed")
	}
}

func TestAttrBE32(t *testing.T) {
	var n uint32
	var has bool
	AttrBE32([]byte{1, 2, 3, 4, 5}, &n, &has)
	if n != 0x01020304 || !has {
		t.Fatalf("got %#x has=%v", n, has)
	}
	AttrBE32([]byte{9, 9, 9}, &n, &has)
	if n != 0x01020304 || !has {
		t.Errorf("a short value changed the number: %#x has=%v", n, has)
	}
	AttrBE32([]byte{0, 0, 0, 7}, &n, nil)
	if n != 7 {
		t.Errorf("without has: %#x", n)
	}
}
