package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"testing"
)

const forwardPolicy = `version: 1
default:
  input: drop
  forward: drop
  output: accept
  log: true
rules:
  - name: web
    hook: forward
    match: {proto: tcp, dport: 8080}
    action: accept
  - name: back
    hook: forward
    match: {proto: tcp, sport: 8080}
    action: accept
  - name: refuse
    hook: forward
    match: {proto: tcp, dport: 24}
    action: reject
`

// TestForward runs the agent on a router between client and server with
// only the forward hook: routed traffic is filtered, the router's own input
// is not.
func TestForward(t *testing.T) {
	n := routerNet(t)
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Server, 8081)
	serveTCP(t, n.Server, 24)
	serveTCP(t, n.Router, 8081)
	a := startAgent(t, n.Router, writePolicy(t, forwardPolicy), "--hooks", "forward")
	routerIn := n.Router.Ifaces()[0].Name

	for _, f := range []struct {
		name           string
		server, router netip.Addr
	}{
		{"ipv4", n.Server.Addr4(), n.Router.Addr4()},
		{"ipv6", n.Server.Addr6(), n.Router.Addr6()},
	} {
		t.Run(f.name, func(t *testing.T) {
			tcpEcho(t, n.Client, netip.AddrPortFrom(f.server, 8080))

			sport := randomPort()
			if c, err := dialTCP(n.Client, netip.AddrPortFrom(f.server, 8081), sport, dropWait); err == nil {
				c.Close()
				t.Errorf("forwarded %s:8081 reachable, want it dropped", f.server)
			} else if !isTimeout(err) {
				t.Errorf("forwarded %s:8081: %v, want a timeout", f.server, err)
			}
			evs := a.waitEvents(t, 1, func(e event) bool {
				return e.str("sport") == fmt.Sprint(sport) && e.str("dst") == f.server.String()
			})
			if len(evs) == 0 {
				t.Errorf("no event for the dropped forwarded SYN from port %d; all events: %v", sport, a.events(t))
			}
			for _, e := range evs {
				checkEvent(t, e, map[string]string{
					"hook": "forward", "rule": "default", "verdict": "drop", "dport": "8081",
					"dst": f.server.String(), "in": routerIn, "out": n.Router.Ifaces()[1].Name,
				})
			}

			if c, err := dialTCP(n.Client, netip.AddrPortFrom(f.server, 24), 0, answerWait); err == nil {
				c.Close()
				t.Errorf("forwarded %s:24 reachable, want it rejected", f.server)
			} else if !errors.Is(err, errRefused) {
				t.Errorf("forwarded %s:24: %v, want ECONNREFUSED (a reset from the router)", f.server, err)
			}

			// Only the forward hook is installed: the router's own port
			// 8081 stays reachable.
			tcpEcho(t, n.Client, netip.AddrPortFrom(f.router, 8081))
		})
	}
}

// TestForwardAndInput installs both hooks on the router: forwarded traffic
// follows the forward rules, the router's own traffic the input default.
func TestForwardAndInput(t *testing.T) {
	n := routerNet(t)
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Router, 8080)
	a := startAgent(t, n.Router, writePolicy(t, forwardPolicy), "--hooks", "input,forward")
	table := nft(t, n.Router, "list", "table", "inet", "fwagent")
	for _, hook := range []string{"input", "forward"} {
		if !regexp.MustCompile(`hook ` + hook + ` priority`).MatchString(table) {
			t.Errorf("no %s base chain:\n%s", hook, table)
		}
	}
	if regexp.MustCompile(`hook output`).MatchString(table) {
		t.Errorf("output chain installed though not asked for:\n%s", table)
	}
	for _, f := range []struct{ server, router netip.Addr }{
		{n.Server.Addr4(), n.Router.Addr4()},
		{n.Server.Addr6(), n.Router.Addr6()},
	} {
		tcpEcho(t, n.Client, netip.AddrPortFrom(f.server, 8080))
		sport := randomPort()
		if connects(n.Client, netip.AddrPortFrom(f.router, 8080), sport) {
			t.Errorf("router's own %s:8080 reachable, want the input default to drop it", f.router)
		}
		evs := a.waitEvents(t, 1, func(e event) bool {
			return e.str("sport") == fmt.Sprint(sport) && e.str("dst") == f.router.String()
		})
		if len(evs) == 0 {
			t.Errorf("no input event for the dropped SYN from port %d; all events: %v", sport, a.events(t))
		}
		for _, e := range evs {
			checkEvent(t, e, map[string]string{"hook": "input", "rule": "default", "verdict": "drop", "dst": f.router.String()})
		}
	}
}
