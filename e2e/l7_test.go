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

	"github.com/fwagent/fwagent/internal/testing/testnet"
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

// A blocking fate is how a blocked exchange ends: what the client's error
// must be, and what the test calls it.
type fate struct {
	name string
	is   func(error) bool
}

var (
	dropped = fate{"dropped (a timeout)", isTimeout}
	reset   = fate{"reset", isReset}
)

// checkEcho checks one exchange with an echo server: what went out was
// sent, what came back got (err when nothing did). A blocked exchange must
// end as how says, an allowed one must bring back what was sent.
func checkEcho(t *testing.T, what string, blocked bool, how fate, sent, got []byte, err error) {
	t.Helper()
	switch {
	case blocked && err == nil:
		t.Errorf("%s echoed, want it %s", what, how.name)
	case blocked && !how.is(err):
		t.Errorf("%s: %v, want it %s", what, err, how.name)
	case !blocked && (err != nil || !bytes.Equal(got, sent)):
		t.Errorf("%s: %v, want it echoed", what, err)
	}
}

// helloExchange connects from ns to the TLS echo server at dst from sport
// (0: any), sends a ClientHello for sni and checks with checkEcho what
// comes back. The handshake carries no payload yet, so it must pass either
// way.
func helloExchange(t *testing.T, ns *testnet.NS, dst netip.AddrPort, sport int, sni string, blocked bool, how fate) {
	t.Helper()
	hello := clientHello(t, sni)
	c, err := dialTCP(ns, dst, sport, answerWait)
	if err != nil {
		t.Errorf("connect to %s for %s: %v", dst, sni, err)
		return
	}
	_ = c.SetDeadline(time.Now().Add(2 * dropWait))
	if _, err := c.Write(hello); err != nil {
		t.Errorf("write ClientHello for %s: %v", sni, err)
	}
	got := make([]byte, len(hello))
	_, err = io.ReadFull(c, got)
	c.Close()
	checkEcho(t, "ClientHello for "+sni, blocked, how, hello, got, err)
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
				checkEcho(t, "query for "+tc.name, tc.blocked, dropped, q, got, err)
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
				sport := randomPort()
				helloExchange(t, n.Client, netip.AddrPortFrom(dst, 443), sport, tc.sni, tc.blocked, dropped)
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
