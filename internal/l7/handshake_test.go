package l7

import (
	"testing"
)

func TestHandshakeServerName(t *testing.T) {
	real := realClientHello(t, "www.example.com")[tlsRecordHeaderLen:]
	late := buildHello(ext{typ: 21, data: make([]byte, 600)}, sniExt("late.example"))[tlsRecordHeaderLen:]
	early := buildHello(sniExt("early.example"), ext{typ: 21, data: make([]byte, 600)})[tlsRecordHeaderLen:]
	tests := []struct {
		name    string
		msg     []byte
		want    string
		wantErr error
	}{
		{"real", real, "www.example.com", nil},
		{"late", late, "late.example", nil},
		{"late cut before the name", late[:400], "", ErrIncomplete},
		{"cut after the name", early[:200], "early.example", nil},
		{"header only", late[:4], "", ErrIncomplete},
		{"empty", nil, "", ErrIncomplete},
		{"server hello", append([]byte{2}, late[1:]...), "", ErrNotTLS},
		{"no sni", buildHello(ext{typ: 21, data: []byte{0}})[tlsRecordHeaderLen:], "", ErrNoSNI},
		{"record, not bare", buildHello(sniExt("a.example")), "", ErrNotTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HandshakeServerName(tt.msg)
			if err != tt.wantErr || string(got) != tt.want {
				t.Fatalf("HandshakeServerName = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestHandshakeLen(t *testing.T) {
	msg := buildHello(sniExt("a.example"))[tlsRecordHeaderLen:]
	if n, err := HandshakeLen(msg); err != nil || n != len(msg) {
		t.Fatalf("HandshakeLen = %d, %v; want %d", n, err, len(msg))
	}
	if _, err := HandshakeLen(msg[:3]); err != ErrIncomplete {
		t.Fatalf("short: %v, want ErrIncomplete", err)
	}
	if _, err := HandshakeLen([]byte{22}); err != ErrNotTLS {
		t.Fatalf("record byte: %v, want ErrNotTLS", err)
	}
}

// FuzzHandshakeServerName checks that the bare-message entry point agrees
// with the record parser on the same hello wrapped in a record.
func FuzzHandshakeServerName(f *testing.F) {
	for _, s := range tlsSeeds(f) {
		if len(s) > tlsRecordHeaderLen {
			f.Add(s[tlsRecordHeaderLen:])
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		name, err := HandshakeServerName(msg)
		if err == nil && len(name) == 0 {
			t.Fatal("empty name without error")
		}
		if len(msg) > tlsMaxPlaintext-tlsRecordHeaderLen {
			return
		}
		rec := []byte{22, 3, 1, byte(len(msg) >> 8), byte(len(msg))}
		rname, rerr := TLSServerName(append(rec, msg...))
		if len(msg) >= tlsHandshakeHeader && (err != rerr || string(name) != string(rname)) {
			t.Fatalf("bare %q, %v; record %q, %v", name, err, rname, rerr)
		}
	})
}
