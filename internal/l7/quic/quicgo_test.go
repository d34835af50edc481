package quic

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/fwagent/fwagent/internal/l7"
)

// captureInitials dials a plain UDP socket on loopback with a quic-go client
// and returns the datagrams it sends before giving up (nobody answers, so
// the client retransmits its first flight until ctx ends).
func captureInitials(t *testing.T, serverName string, v quicgo.Version, want int) [][]byte {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tlsConf := &tls.Config{ServerName: serverName, NextProtos: []string{"h3"}, InsecureSkipVerify: true}
		conn, err := quicgo.DialAddr(ctx, pc.LocalAddr().String(), tlsConf, &quicgo.Config{Versions: []quicgo.Version{v}})
		if err == nil {
			conn.CloseWithError(0, "")
		}
	}()
	defer func() { cancel(); <-done }()

	var out [][]byte
	buf := make([]byte, 65536)
	for len(out) < want {
		if err := pc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read after %d datagrams: %v", len(out), err)
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
	return out
}

// A real QUIC stack's first flight (quic-go with Go's crypto/tls, whose
// hello with an X25519MLKEM768 key share spans more than one packet) yields
// the name it dialed, in version 1 and 2.
func TestQuicGoClient(t *testing.T) {
	for _, tt := range []struct {
		name string
		v    quicgo.Version
	}{{"v1", quicgo.Version1}, {"v2", quicgo.Version2}} {
		t.Run(tt.name, func(t *testing.T) {
			const sni = "Quic-Go.Example.net"
			dgrams := captureInitials(t, sni, tt.v, 2)
			var a Assembler
			for i, d := range dgrams {
				st, name := a.Feed(d)
				t.Logf("datagram %d: %d bytes, state %d", i, len(d), st)
				if st == l7.NameFound {
					if string(name) != sni {
						t.Fatalf("name %q", name)
					}
					return
				}
				if st != l7.NamePending {
					t.Fatalf("state %d: %v", st, a.Err())
				}
			}
			t.Fatalf("no name after %d datagrams", len(dgrams))
		})
	}
}
