package l7

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
)

// dnsQuery builds a standard query for name with the given id.
func dnsQuery(id uint16, name string) []byte {
	msg := []byte{byte(id >> 8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	msg = appendWireName(msg, name)
	return append(msg, 0, 1, 0, 1) // A, IN
}

func appendWireName(b []byte, name string) []byte {
	name = strings.TrimSuffix(name, ".")
	if name != "" {
		for label := range strings.SplitSeq(name, ".") {
			b = append(b, byte(len(label)))
			b = append(b, label...)
		}
	}
	return append(b, 0)
}

// dnsHeader returns a 12-byte query header with one question.
func dnsHeader() []byte { return []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0} }

func tcpFrame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

// realClientHello returns the first TLS record crypto/tls sends when dialing
// serverName, captured over a net.Pipe.
func realClientHello(tb testing.TB, serverName string) []byte {
	tb.Helper()
	return realClientHelloConfig(tb, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
}

func realClientHelloConfig(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, cfg)
		_ = c.Handshake()
		c.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		tb.Fatalf("read record header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:5]))
	if _, err := io.ReadFull(server, body); err != nil {
		tb.Fatalf("read record body: %v", err)
	}
	return append(hdr, body...)
}

// ext is one TLS extension for buildHello.
type ext struct {
	typ  uint16
	data []byte
}

func sniExt(names ...string) ext {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	data := binary.BigEndian.AppendUint16(nil, uint16(len(list)))
	return ext{typ: 0, data: append(data, list...)}
}

// helloBody builds a ClientHello body with the given extensions; exts nil
// means no extensions block at all.
func helloBody(exts []ext) []byte {
	b := []byte{3, 3}
	b = append(b, make([]byte, 32)...) // random
	b = append(b, 32)                  // session id
	b = append(b, make([]byte, 32)...)
	b = append(b, 0, 4, 0x13, 0x01, 0x13, 0x02) // cipher suites
	b = append(b, 1, 0)                         // compression: null
	if exts == nil {
		return b
	}
	var eb []byte
	for _, e := range exts {
		eb = binary.BigEndian.AppendUint16(eb, e.typ)
		eb = binary.BigEndian.AppendUint16(eb, uint16(len(e.data)))
		eb = append(eb, e.data...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(eb)))
	return append(b, eb...)
}

// tlsRecord wraps a handshake body of type 1 in one record.
func tlsRecord(body []byte) []byte {
	hs := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	rec := []byte{22, 3, 1}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(hs)))
	return append(rec, hs...)
}

func buildHello(exts ...ext) []byte { return tlsRecord(helloBody(exts)) }
