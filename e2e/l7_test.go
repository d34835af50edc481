package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const l7Policy = `version: 1
default:
  input: drop
  log: true
sets:
  ads: ["*.ads.example", tracker.example]
rules:
  - name: no-ads-dns
    match: {proto: udp, dport: 53, dns_qname: $ads}
    action: drop
    log: true
  - name: dns
    match: {proto: udp, dport: 53}
    action: accept
  - name: no-ads-tls
    match: {proto: tcp, dport: 443, tls_sni: $ads}
    action: drop
    log: true
  - name: tls
    match: {proto: tcp, dport: 443}
    action: accept
`

// dnsQuery builds a DNS query for name.
func dnsQuery(t *testing.T, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{
		Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET,
	}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// clientHello returns the bytes crypto/tls sends first for serverName: a
// real ClientHello record.
func clientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		defer c.Close()
		_ = tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	}()
	_ = s.SetReadDeadline(time.Now().Add(answerWait))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatalf("read ClientHello header: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatalf("read ClientHello: %v", err)
	}
	return append(hdr, body...)
}

// TestL7 checks decisions that need the payload: DNS query names and TLS
// SNI, on real packets through the queue.
func TestL7(t *testing.T) {
	n := agentNet(t)
	serveUDP(t, n.Server, 53)
	serveTCP(t, n.Server, 443)
	a := startAgent(t, n.Server, writePolicy(t, l7Policy))

	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		t.Run(fmt.Sprint("dns ", dst), func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				blocked bool
			}{
				{"www.example.org", false},
				{"x.ads.example", true},
				{"tracker.example", true},
				{"sub.tracker.example", false},
			} {
				q := dnsQuery(t, tc.name)
				got, err := udpExchange(n.Client, netip.AddrPortFrom(dst, 53), q, dropWait)
				switch {
				case tc.blocked && err == nil:
					t.Errorf("query for %s answered, want it dropped", tc.name)
				case tc.blocked && !isTimeout(err):
					t.Errorf("query for %s: %v, want a timeout", tc.name, err)
				case !tc.blocked && (err != nil || !bytes.Equal(got, q)):
					t.Errorf("query for %s: %v, want it through", tc.name, err)
				}
				if !tc.blocked {
					continue
				}
				evs := a.waitEvents(t, 1, func(e event) bool {
					return e.str("dport") == "53" && e.str("dst") == dst.String() && e.str("length") == fmt.Sprint(len(q)+8+ipHeader(dst))
				})
				if len(evs) == 0 {
					t.Errorf("no event for the dropped query for %s; all events: %v", tc.name, a.events(t))
				}
				for _, e := range evs {
					checkEvent(t, e, map[string]string{"rule": "no-ads-dns", "verdict": "drop"})
				}
			}
		})

		t.Run(fmt.Sprint("tls ", dst), func(t *testing.T) {
			for _, tc := range []struct {
				sni     string
				blocked bool
			}{
				{"www.example.org", false},
				{"cdn.ads.example", true},
			} {
				hello := clientHello(t, tc.sni)
				sport := randomPort()
				c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 443), sport, answerWait)
				if err != nil {
					// The handshake carries no payload yet: it must pass.
					t.Errorf("connect to 443 for %s: %v", tc.sni, err)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(2 * dropWait))
				if _, err := c.Write(hello); err != nil {
					t.Errorf("write ClientHello: %v", err)
				}
				got := make([]byte, len(hello))
				_, err = io.ReadFull(c, got)
				c.Close()
				switch {
				case tc.blocked && err == nil:
					t.Errorf("ClientHello for %s echoed, want it dropped", tc.sni)
				case tc.blocked && !isTimeout(err):
					t.Errorf("ClientHello for %s: %v, want a timeout", tc.sni, err)
				case !tc.blocked && (err != nil || !bytes.Equal(got, hello)):
					t.Errorf("ClientHello for %s: %v, want it echoed", tc.sni, err)
				}
				if !tc.blocked {
					continue
				}
				evs := a.waitEvents(t, 1, func(e event) bool { return e.str("sport") == fmt.Sprint(sport) })
				if len(evs) == 0 {
					t.Errorf("no event for the dropped ClientHello for %s; all events: %v", tc.sni, a.events(t))
				}
				for _, e := range evs {
					checkEvent(t, e, map[string]string{"rule": "no-ads-tls", "verdict": "drop", "dport": "443"})
				}
			}
		})
	}
}

func ipHeader(a netip.Addr) int {
	if a.Is6() {
		return 40
	}
	return 20
}
