package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	quic "github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// selfSigned is a certificate for names, signed by itself: clients in these
// tests skip verification, what matters is that the handshake completes.
func selfSigned(t *testing.T, names []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// pageTitle is the title of the page the HTTP/3 server serves for host.
func pageTitle(host string) string { return "loaded " + host }

// spkiHash is the base64 SHA-256 of the certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list wants it (QUIC ignores
// --ignore-certificate-errors).
func spkiHash(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	c, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// serveHTTP3 runs a quic-go HTTP/3 server on UDP port 443 inside ns, and
// nothing on TCP: a page that loads came over QUIC.
func serveHTTP3(t *testing.T, ns *testnet.NS, cert tls.Certificate) {
	t.Helper()
	conn := listenPacket(t, ns, "udp", ":443")
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<!doctype html><html><head><title>%s</title></head><body>%s</body></html>\n", pageTitle(host), host)
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(conn)
	}()
	t.Cleanup(func() {
		srv.Close()
		conn.Close()
		<-done
	})
}

// quicTransport is a quic-go transport on a UDP socket of ns.
func quicTransport(t *testing.T, ns *testnet.NS) *quic.Transport {
	t.Helper()
	conn := inNS(t, ns, func() (*net.UDPConn, error) { return net.ListenUDP("udp", nil) })
	tr := &quic.Transport{Conn: conn}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// quicHandshake dials dst from ns with quic-go for serverName, from a
// socket of its own, and reports whether the handshake completed within
// wait.
func quicHandshake(t *testing.T, ns *testnet.NS, dst netip.AddrPort, serverName string, v quic.Version, wait time.Duration) error {
	tr := quicTransport(t, ns)
	defer tr.Close()
	return quicDial(tr, dst, serverName, v, wait)
}

func quicDial(tr *quic.Transport, dst netip.AddrPort, serverName string, v quic.Version, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(dst),
		&tls.Config{ServerName: serverName, NextProtos: []string{http3.NextProtoH3}, InsecureSkipVerify: true},
		&quic.Config{Versions: []quic.Version{v}, HandshakeIdleTimeout: wait})
	if err != nil {
		return err
	}
	return c.CloseWithError(0, "")
}

const quicDenyPolicy = `version: 1
default: {input: accept, output: accept}
sets:
  denied: ["*.denied.example", denied.example]
rules:
  - name: deny-quic
    hook: output
    match: {proto: udp, dport: 443, tls_sni: $denied}
    action: drop
    log: true
  - name: deny-tls
    hook: output
    match: {proto: tcp, dport: 443, tls_sni: $denied}
    action: reject
`

const quicAllowPolicy = `version: 1
default: {input: accept, output: accept}
sets:
  allowed: ["*.allowed.example", allowed.example]
rules:
  - name: allow-quic
    hook: output
    match: {proto: udp, dport: 443, tls_sni: $allowed}
    action: accept
  - name: other-quic
    hook: output
    match: {proto: udp, dport: 443}
    action: drop
`

// TestQUICClient: a quic-go client, whose ClientHello spans two Initial
// packets with the name in the second, completes a handshake to an allowed
// name and gets no answer for a denied one, under a denylist and under an
// allowlist, in QUIC v1 and v2, enforced on the client's output hook.
func TestQUICClient(t *testing.T) {
	n := agentNet(t)
	names := []string{"www.allowed.example", "www.denied.example", "other.example"}
	serveHTTP3(t, n.Server, selfSigned(t, names))
	dst := netip.AddrPortFrom(n.Server.Addr4(), 443)

	for _, tc := range []struct {
		policy  string
		passes  []string
		dropped []string
		rule    string
	}{
		{quicDenyPolicy, []string{"www.allowed.example", "other.example"}, []string{"www.denied.example"}, "deny-quic"},
		{quicAllowPolicy, []string{"www.allowed.example"}, []string{"www.denied.example", "other.example"}, ""},
	} {
		a := startAgent(t, n.Client, writePolicy(t, tc.policy), "--hooks", "output")
		for _, v := range []quic.Version{quic.Version1, quic.Version2} {
			for _, name := range tc.passes {
				start := time.Now()
				if err := quicHandshake(t, n.Client, dst, name, v, answerWait); err != nil {
					t.Errorf("%s, %s: handshake: %v, want it to complete", v, name, err)
				}
				t.Logf("%s, %s: handshake done after %v", v, name, time.Since(start).Round(time.Millisecond))
			}
			for _, name := range tc.dropped {
				err := quicHandshake(t, n.Client, dst, name, v, 2*time.Second)
				var idle *quic.IdleTimeoutError
				if err == nil || !errors.As(err, &idle) && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s, %s: handshake: %v, want a timeout", v, name, err)
				}
			}
		}
		// IPv6 takes the same path.
		dst6 := netip.AddrPortFrom(n.Server.Addr6(), 443)
		if err := quicHandshake(t, n.Client, dst6, tc.passes[0], quic.Version1, answerWait); err != nil {
			t.Errorf("IPv6, %s: handshake: %v, want it to complete", tc.passes[0], err)
		}
		if err := quicHandshake(t, n.Client, dst6, tc.dropped[0], quic.Version1, 2*time.Second); err == nil {
			t.Errorf("IPv6, %s: handshake completed, want a timeout", tc.dropped[0])
		}
		// One socket, two connections: the flow's first decision must not
		// decide the second.
		tr := quicTransport(t, n.Client)
		if err := quicDial(tr, dst, tc.passes[0], quic.Version1, answerWait); err != nil {
			t.Errorf("same socket, %s: handshake: %v, want it to complete", tc.passes[0], err)
		}
		if err := quicDial(tr, dst, tc.dropped[0], quic.Version1, 2*time.Second); err == nil {
			t.Errorf("same socket, %s after %s: handshake completed, want a timeout", tc.dropped[0], tc.passes[0])
		}
		tr.Close()
		if tc.rule != "" {
			evs := a.waitEvents(t, 1, func(e event) bool { return e.str("rule") == tc.rule })
			if len(evs) == 0 {
				t.Errorf("no drop event from rule %s; events: %v", tc.rule, a.events(t))
			}
			for _, e := range evs {
				checkEvent(t, e, map[string]string{"verdict": "drop", "dport": "443"})
			}
		}
		a.kill(t)
	}
}
