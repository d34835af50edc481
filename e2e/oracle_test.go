package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// The agent against a kernel-only reference, as the acceptance oracle of #13
// does it: random L3/L4 policies with state (and sets, negations, length,
// interfaces, family, log and audit), each translated by hand (here,
// by translateNft, which shares nothing with rules/) into an nftables table;
// the same real probes (TCP connect and data, two UDP datagrams, two echo
// requests, IPv4 and IPv6) go through the reference table alone, through the
// agent with --kernel-rules auto and with --kernel-rules off; what the client
// saw must be the same all three times. Now and then a rule also needs
// userspace (a payload no probe carries: it never matches, and the
// reference leaves it out), so with --kernel-rules auto the kernel and the
// queue share the policy, and offload must still never skip a later rule.
// scripts/oracle.sh runs it longer.

var (
	oraclePolicies = flag.Int("oracle.policies", 6, "oracle test: random policies to compare")
	oracleSeed     = flag.Uint64("oracle.seed", 0, "oracle test: seed (0: from the clock, printed)")
)

const (
	oracleTCPPort = 7401
	oracleUDPPort = 7402
)

// oracleRule is one generated rule, kept as the fields both translations
// read.
type oracleRule struct {
	hook     string // input or output
	proto    string // "", tcp, udp, icmp, icmpv6
	src, dst oracleList[netip.Prefix]
	dport    oracleList[[2]int] // [a, a]: one port
	sport    oracleList[[2]int]
	state    []string
	tcpFlags string // "", P/P, S/SA, S, SA (without a mask: all eight)
	icmpType string // "", echo-request, echo-reply
	length   [2]int // IP length range; [0, 0]: none
	iface    string // iif on input, oif on output: a name or a trailing-* pattern
	family   string // "", ipv4, ipv6 (always the family of the rule's addresses)
	audit    bool   // a drop or reject that accepts instead (and logs)
	action   string // accept, drop, reject
	offload  string // "", true, false
	log      bool   // changes no verdict: the reference leaves it out
	// inspect adds a payload match no probe carries: the rule needs
	// userspace (with --kernel-rules auto its kernel part queues) and
	// never matches, so the reference leaves it out.
	inspect bool
}

// ifaceField is the interface field the rule's hook has: the input
// interface on input, the output interface on output.
func (r oracleRule) ifaceField() string {
	if r.hook == "output" {
		return "oif"
	}
	return "iif"
}

// oracleNeedle is the inspect rules' payload; no probe sends it.
const oracleNeedle = "fwagent-oracle-never-sent"

// oracleList is a list field: it holds if any plain entry holds and no
// negated one does (docs/policy.md, "Lists and !"). plainSet and notSet,
// when set, name the policy set that holds the plain or the negated
// entries, which the policy then writes as "$name" and "!$name".
type oracleList[T any] struct {
	plain, not       []T
	plainSet, notSet string
}

func (l oracleList[T]) set() bool { return len(l.plain)+len(l.not) > 0 }

type oraclePolicy struct {
	audit    bool // mode: audit: every verdict is an accept
	hooks    []string
	defaults map[string]string
	sets     []oracleSet
	rules    []oracleRule
}

// oracleSet is a named set of the policy, its entries as YAML scalars.
type oracleSet struct {
	name    string
	entries []string
}

type oracleGen struct {
	r              *rand.Rand
	client, server [2]netip.Addr // v4, v6
	sets           []oracleSet   // of the policy being generated
}

// toSets now and then moves l's plain or negated entries into a named set
// of the policy.
func toSets[T any](g *oracleGen, l *oracleList[T], yaml func(T) string) {
	name := func(vs []T) string {
		s := oracleSet{name: fmt.Sprintf("s%d", len(g.sets))}
		for _, v := range vs {
			s.entries = append(s.entries, yaml(v))
		}
		g.sets = append(g.sets, s)
		return s.name
	}
	if len(l.plain) > 0 && g.r.IntN(3) == 0 {
		l.plainSet = name(l.plain)
	}
	if len(l.not) > 0 && g.r.IntN(3) == 0 {
		l.notSet = name(l.not)
	}
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// addr is a prefix that holds a (an address of the flow) or one that holds
// no address of the test.
func (g *oracleGen) addr(a netip.Addr) netip.Prefix {
	switch g.r.IntN(3) {
	case 0:
		return netip.PrefixFrom(a, a.BitLen())
	case 1:
		bits := 24
		if a.Is6() {
			bits = 64
		}
		return netip.PrefixFrom(a, bits).Masked()
	}
	if a.Is4() {
		return netip.MustParsePrefix("192.0.2.0/24")
	}
	return netip.MustParsePrefix("2001:db8:ffff::/48")
}

func (g *oracleGen) port(local bool) [2]int {
	if local { // the client's ephemeral source port, or none of it
		return pick(g.r, [2]int{1024, 65535}, [2]int{1, 1023}, [2]int{32768, 60999})
	}
	return pick(g.r, [2]int{oracleTCPPort, oracleTCPPort}, [2]int{oracleUDPPort, oracleUDPPort}, [2]int{7400, 7410}, [2]int{9999, 9999})
}

// list makes a list field of one to three entries, some of them negated
// now and then, or a lone negation.
func list[T any](r *rand.Rand, one func() T) oracleList[T] {
	var l oracleList[T]
	for range 1 + r.IntN(3) {
		if r.IntN(4) == 0 {
			l.not = append(l.not, one())
		} else {
			l.plain = append(l.plain, one())
		}
	}
	return l
}

func (g *oracleGen) rule(hook string) oracleRule {
	r := oracleRule{hook: hook, action: pick(g.r, "accept", "accept", "drop", "drop", "reject")}
	r.proto = pick(g.r, "", "", "tcp", "udp", "icmp", "icmpv6")
	fam := g.r.IntN(2)
	switch r.proto { // the agent refuses an address of the other ICMP's family
	case "icmp":
		fam = 0
	case "icmpv6":
		fam = 1
	}
	// On output the server is the source.
	local, remote := g.client[fam], g.server[fam]
	if hook == "output" {
		local, remote = remote, local
	}
	if g.r.IntN(3) == 0 {
		r.src = list(g.r, func() netip.Prefix { return g.addr(local) })
	}
	if g.r.IntN(3) == 0 {
		r.dst = list(g.r, func() netip.Prefix { return g.addr(remote) })
	}
	quoted := func(p netip.Prefix) string { return fmt.Sprintf("%q", p) }
	toSets(g, &r.src, quoted)
	toSets(g, &r.dst, quoted)
	// Ports without proto mean TCP, UDP or SCTP; ICMP types without proto
	// both ICMP versions; a rule gets one or the other.
	switch {
	case r.proto == "tcp" || r.proto == "udp" || (r.proto == "" && g.r.IntN(2) == 0):
		if g.r.IntN(2) == 0 {
			r.dport = list(g.r, func() [2]int { return g.port(hook == "output") })
		}
		if g.r.IntN(4) == 0 {
			r.sport = list(g.r, func() [2]int { return g.port(hook == "input") })
		}
		toSets(g, &r.dport, portsYAML)
		toSets(g, &r.sport, portsYAML)
	case g.r.IntN(3) == 0:
		r.icmpType = pick(g.r, "echo-request", "echo-reply")
	}
	if r.proto == "tcp" && g.r.IntN(3) == 0 {
		r.tcpFlags = pick(g.r, "P/P", "S/SA", "S", "SA")
	}
	if g.r.IntN(2) == 0 {
		all := []string{"new", "established", "related"}
		for _, s := range all {
			if g.r.IntN(2) == 0 {
				r.state = append(r.state, s)
			}
		}
		if r.state == nil {
			r.state = []string{pick(g.r, all...)}
		}
	}
	if g.r.IntN(5) == 0 {
		// The probes' IP lengths: 40-80 for TCP without data (v4, v6),
		// 44 and 64 for the echo requests, more for data and datagrams.
		r.length = pick(g.r, [2]int{0, 60}, [2]int{61, 65535}, [2]int{40, 100}, [2]int{44, 44}, [2]int{100, 1500})
	}
	if g.r.IntN(6) == 0 {
		r.family = []string{"ipv4", "ipv6"}[fam]
	}
	if g.r.IntN(6) == 0 {
		// The server's end of the veth pair, a pattern that holds it, the
		// client's end and a pattern that holds nothing here.
		r.iface = pick(g.r, "veth-s", "veth*", "veth-c", "eth*")
	}
	r.inspect = g.r.IntN(6) == 0
	r.log = r.action != "accept" && g.r.IntN(4) == 0
	r.audit = r.action != "accept" && g.r.IntN(6) == 0
	if r.action == "accept" {
		r.offload = pick(g.r, "", "true", "false")
		if (r.tcpFlags != "" || r.length != [2]int{} || r.inspect) && r.offload == "true" {
			r.offload = "" // refused: flags, length and payload change within a flow
		}
	}
	return r
}

func (g *oracleGen) policy() oraclePolicy {
	p := oraclePolicy{hooks: []string{"input"}, defaults: map[string]string{"input": pick(g.r, "accept", "drop"), "output": "accept"}}
	g.sets = nil
	p.audit = g.r.IntN(12) == 0
	if g.r.IntN(2) == 0 {
		p.hooks = append(p.hooks, "output")
		p.defaults["output"] = pick(g.r, "accept", "accept", "drop")
	}
	for range 1 + g.r.IntN(6) {
		p.rules = append(p.rules, g.rule(pick(g.r, p.hooks...)))
	}
	p.sets = g.sets
	return p
}

func portsYAML(p [2]int) string {
	if p[0] == p[1] {
		return fmt.Sprint(p[0])
	}
	return fmt.Sprintf("%d-%d", p[0], p[1])
}

// listYAML writes l as a YAML flow list, negated entries quoted with "!".
func listYAML[T any](l oracleList[T], str func(T) string) string {
	var es []string
	if l.plainSet != "" {
		es = append(es, fmt.Sprintf("%q", "$"+l.plainSet))
	} else {
		for _, v := range l.plain {
			es = append(es, fmt.Sprintf("%q", str(v)))
		}
	}
	if l.notSet != "" {
		es = append(es, fmt.Sprintf("%q", "!$"+l.notSet))
	} else {
		for _, v := range l.not {
			es = append(es, fmt.Sprintf("%q", "!"+str(v)))
		}
	}
	return "[" + strings.Join(es, ", ") + "]"
}

// yaml is the policy in the agent's language.
func (p oraclePolicy) yaml() string {
	var b strings.Builder
	b.WriteString("version: 1\n")
	if p.audit {
		b.WriteString("mode: audit\n")
	}
	fmt.Fprintf(&b, "default: {input: %s, output: %s}\n", p.defaults["input"], p.defaults["output"])
	if len(p.sets) > 0 {
		b.WriteString("sets:\n")
		for _, s := range p.sets {
			fmt.Fprintf(&b, "  %s: [%s]\n", s.name, strings.Join(s.entries, ", "))
		}
	}
	b.WriteString("rules:\n")
	for i, r := range p.rules {
		var m []string
		if r.proto != "" {
			m = append(m, "proto: "+r.proto)
		}
		if r.family != "" {
			m = append(m, "family: "+r.family)
		}
		for _, f := range []struct {
			name string
			l    oracleList[netip.Prefix]
		}{{"src", r.src}, {"dst", r.dst}} {
			if f.l.set() {
				m = append(m, f.name+": "+listYAML(f.l, netip.Prefix.String))
			}
		}
		for _, f := range []struct {
			name string
			l    oracleList[[2]int]
		}{{"dport", r.dport}, {"sport", r.sport}} {
			if f.l.set() {
				m = append(m, f.name+": "+listYAML(f.l, portsYAML))
			}
		}
		if r.icmpType != "" {
			m = append(m, "icmp_type: "+r.icmpType)
		}
		if r.state != nil {
			m = append(m, "state: ["+strings.Join(r.state, ", ")+"]")
		}
		if r.tcpFlags != "" {
			m = append(m, "tcp_flags: "+r.tcpFlags)
		}
		if r.length != [2]int{} {
			m = append(m, "length: "+portsYAML(r.length))
		}
		if r.iface != "" {
			m = append(m, fmt.Sprintf("%s: %q", r.ifaceField(), r.iface))
		}
		if r.inspect {
			m = append(m, fmt.Sprintf("payload: {contains: %q}", oracleNeedle))
		}
		fmt.Fprintf(&b, "  - name: r%d\n    hook: %s\n    match: {%s}\n    action: %s\n", i, r.hook, strings.Join(m, ", "), r.action)
		if r.offload != "" {
			fmt.Fprintf(&b, "    offload: %s\n", r.offload)
		}
		if r.log {
			b.WriteString("    log: true\n")
		}
		if r.audit {
			b.WriteString("    audit: true\n")
		}
	}
	return b.String()
}

// translateNft is the policy as an operator would write it in nftables, one
// rule a rule, from docs/policy.md's semantics: first match wins, a family's
// address never matches the other family, ports need their protocol, reject
// is a TCP reset for TCP and port unreachable otherwise, loopback and ICMPv6
// neighbour discovery are accepted before the policy on every hook, and
// audit (the policy's mode or the rule's) accepts what it would drop or
// reject.
func (p oraclePolicy) translateNft() string {
	var b strings.Builder
	b.WriteString("table inet fwref {\n")
	for _, hook := range []string{"input", "output"} {
		lo := "iif"
		if hook == "output" {
			lo = "oif"
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority 0; policy accept;\n", hook, hook)
		if !slices.Contains(p.hooks, hook) {
			b.WriteString("\t}\n")
			continue
		}
		fmt.Fprintf(&b, "\t\t%s lo accept\n\t\tmeta l4proto ipv6-icmp icmpv6 type 133-137 accept\n", lo)
		for _, r := range p.rules {
			if r.hook != hook || r.inspect {
				continue // an inspect rule matches no probe
			}
			// One nft rule an alternative: in first-match order, rules
			// with the same verdict one after another are their OR.
			action := r.action
			if r.audit || p.audit {
				action = "accept" // audit logs the drop or reject and accepts
			}
			for _, m := range r.nftMatches() {
				switch {
				case action != "reject":
					fmt.Fprintf(&b, "\t\t%s %s\n", m, action)
				case r.proto == "tcp":
					fmt.Fprintf(&b, "\t\t%s reject with tcp reset\n", m)
				default:
					fmt.Fprintf(&b, "\t\t%s meta l4proto tcp reject with tcp reset\n\t\t%s reject with icmpx port-unreachable\n", m, m)
				}
			}
		}
		def := p.defaults[hook]
		if p.audit {
			def = "accept"
		}
		fmt.Fprintf(&b, "\t\t%s\n\t}\n", def)
	}
	b.WriteString("}\n")
	return b.String()
}

// nftMatches are the rule's match as alternatives, each a conjunction nft
// can write on one line; the rule holds if any does.
func (r oracleRule) nftMatches() []string {
	alts := [][]string{nil}
	and := func(options ...string) { // every alternative times every option
		var next [][]string
		for _, a := range alts {
			for _, o := range options {
				next = append(next, append(slices.Clone(a), o))
			}
		}
		alts = next
	}
	switch r.proto {
	case "icmpv6":
		and("meta l4proto ipv6-icmp")
	case "":
		if r.dport.set() || r.sport.set() {
			and("meta l4proto { tcp, udp, sctp }")
		}
	default:
		and("meta l4proto " + r.proto)
	}
	// Plain entries are alternatives and each negation one more condition:
	// no nft sets, whose intervals may not overlap.
	for _, f := range []struct {
		dir string
		l   oracleList[netip.Prefix]
	}{{"saddr", r.src}, {"daddr", r.dst}} {
		if !f.l.set() {
			continue
		}
		ip, other := "ip", "meta nfproto ipv6"
		if append(slices.Clone(f.l.plain), f.l.not...)[0].Addr().Is6() {
			ip, other = "ip6", "meta nfproto ipv4"
		}
		if len(f.l.plain) == 0 {
			// Only negations: also every packet of the other family.
			and(fmt.Sprintf("%s %s != %s", ip, f.dir, f.l.not[0]), other)
			f.l.not = f.l.not[1:]
			for _, p := range f.l.not {
				and(fmt.Sprintf("%s %s != %s", ip, f.dir, p), other)
			}
			continue
		}
		var plain []string
		for _, p := range f.l.plain {
			plain = append(plain, fmt.Sprintf("%s %s %s", ip, f.dir, p))
		}
		and(plain...)
		for _, p := range f.l.not {
			and(fmt.Sprintf("%s %s != %s", ip, f.dir, p))
		}
	}
	for _, f := range []struct {
		dir string
		l   oracleList[[2]int]
	}{{"dport", r.dport}, {"sport", r.sport}} {
		var plain []string
		for _, p := range f.l.plain {
			plain = append(plain, "th "+f.dir+" "+portsYAML(p))
		}
		if plain != nil {
			and(plain...)
		}
		for _, p := range f.l.not {
			and("th " + f.dir + " != " + portsYAML(p))
		}
	}
	if r.state != nil {
		and("ct state { " + strings.Join(r.state, ", ") + " }")
	}
	if r.length != [2]int{} {
		and("meta length " + portsYAML(r.length))
	}
	if r.family != "" {
		and("meta nfproto " + r.family)
	}
	if r.iface != "" {
		and(fmt.Sprintf("%sname %q", r.ifaceField(), r.iface))
	}
	switch r.tcpFlags {
	case "P/P":
		and("tcp flags & psh == psh")
	case "S/SA":
		and("tcp flags & (syn | ack) == syn")
	case "S":
		and("tcp flags == 0x02")
	case "SA":
		and("tcp flags == 0x12")
	}
	switch {
	case r.icmpType == "":
	case r.proto == "icmp":
		and("icmp type " + r.icmpType)
	case r.proto == "icmpv6":
		and("icmpv6 type " + r.icmpType)
	default:
		and("meta l4proto icmp icmp type "+r.icmpType, "meta l4proto ipv6-icmp icmpv6 type "+r.icmpType)
	}
	var out []string
	for _, a := range alts {
		if a == nil {
			a = []string{"meta nfproto { ipv4, ipv6 }"}
		}
		m := strings.Join(a, " ")
		v4 := strings.Contains(m, "meta nfproto ipv4") || strings.Contains(m, "ip saddr") || strings.Contains(m, "ip daddr")
		v6 := strings.Contains(m, "meta nfproto ipv6") || strings.Contains(m, "ip6 ")
		if v4 && v6 {
			continue // holds for no packet, and nft refuses it
		}
		out = append(out, m)
	}
	return out
}

// oracleProbes runs every probe from the client to the server at once (each
// its own flow) and returns what the client saw, one line a probe.
func oracleProbes(n *testnet.Net) []string {
	dsts := []netip.Addr{n.Server.Addr4(), n.Server.Addr6()}
	out := make([]string, 3*len(dsts))
	var wg sync.WaitGroup
	for i, dst := range dsts {
		wg.Go(func() {
			out[3*i] = fmt.Sprintf("tcp %s: %s", dst, probeTCP(n.Client, netip.AddrPortFrom(dst, oracleTCPPort)))
		})
		wg.Go(func() {
			out[3*i+1] = fmt.Sprintf("udp %s: %s", dst, probeUDP(n.Client, netip.AddrPortFrom(dst, oracleUDPPort)))
		})
		wg.Go(func() {
			id := 1 + rand.IntN(60000)
			var seen []string
			for seq := 1; seq <= 2; seq++ {
				ok, err := ping(n.Client, dst, id, seq, 16, dropWait)
				seen = append(seen, fmt.Sprintf("echo %d %s", seq, outcome(ok, err)))
			}
			out[3*i+2] = fmt.Sprintf("icmp %s: %s", dst, strings.Join(seen, ", "))
		})
	}
	wg.Wait()
	return out
}

func outcome(ok bool, err error) string {
	switch {
	case err != nil:
		return "error " + err.Error()
	case ok:
		return "answered"
	}
	return "unanswered"
}

// errClass names how a socket call failed, in terms that do not change
// from run to run.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF):
		return "closed"
	}
	return "error " + err.Error()
}

// probeTCP connects, writes and reads the echo back. A reset of the
// handshake's last ACK (the flow is established by then) can reach the
// socket before or after connect returns, depending on how long the
// verdict took; either way the peer answered the SYN and then reset, so
// both read "echo reset".
func probeTCP(ns *testnet.NS, dst netip.AddrPort) string {
	const resetAfterHandshake = "connect ok, echo reset"
	c, err := dialTCP(ns, dst, 0, dropWait)
	if errors.Is(err, syscall.ECONNRESET) {
		return resetAfterHandshake
	}
	if err != nil {
		return "connect " + errClass(err)
	}
	defer c.Close()
	msg := []byte("oracle data")
	if _, err := c.Write(msg); errors.Is(err, syscall.ECONNRESET) {
		return resetAfterHandshake
	} else if err != nil {
		return "connect ok, write " + errClass(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(dropWait))
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	return "connect ok, echo " + errClass(err)
}

func probeUDP(ns *testnet.NS, dst netip.AddrPort) string {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", dst.String())
		return err
	}); err != nil {
		return "dial " + errClass(err)
	}
	defer c.Close()
	var seen []string
	buf := make([]byte, 64)
	for i := 1; i <= 2; i++ {
		if _, err := c.Write(fmt.Appendf(nil, "datagram %d", i)); err != nil {
			seen = append(seen, fmt.Sprintf("datagram %d write %s", i, errClass(err)))
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(dropWait))
		_, err := c.Read(buf)
		seen = append(seen, fmt.Sprintf("datagram %d echo %s", i, errClass(err)))
	}
	return strings.Join(seen, ", ")
}

// TestOracleAgentMatchesNftReference: for random policies, the client sees
// the same through the agent (--kernel-rules auto and off) as through a
// hand-written nftables table of the same policy.
func TestOracleAgentMatchesNftReference(t *testing.T) {
	n := agentNet(t, oracleTCPPort)
	serveUDP(t, n.Server, oracleUDPPort)
	// Every policy runs the probes three times: the kernel's per-peer
	// limit on ICMP errors would swallow some port unreachables.
	for _, key := range []string{"net/ipv4/icmp_ratelimit", "net/ipv6/icmp/ratelimit"} {
		if err := n.Server.WriteSysctl(key, "0"); err != nil {
			t.Fatal(err)
		}
	}
	seed := *oracleSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -oracle.seed=%d)", seed, seed)
	g := &oracleGen{r: rand.New(rand.NewPCG(seed, 0)),
		client: [2]netip.Addr{n.Client.Addr4(), n.Client.Addr6()},
		server: [2]netip.Addr{n.Server.Addr4(), n.Server.Addr6()}}
	mismatches := 0
	seen := map[string]bool{} // the reference's answers, to see the test is not vacuous
	// Policies with an inspect rule, and those of them whose --kernel-rules
	// auto run queued a packet: the kernel and the queue really shared it.
	inspecting, shared := 0, 0
	for i := range *oraclePolicies {
		p := g.policy()
		ref := p.translateNft()
		nftLoad(t, n.Server, ref)
		want := oracleProbes(n)
		seen[strings.Join(want, "\n")] = true
		nft(t, n.Server, "delete", "table", "inet", "fwref")
		inspects := slices.ContainsFunc(p.rules, func(r oracleRule) bool { return r.inspect })
		if inspects {
			inspecting++
		}
		for _, mode := range []string{"auto", "off"} {
			a := startAgent(t, n.Server, writePolicy(t, p.yaml()), "--hooks", strings.Join(p.hooks, ","), "--kernel-rules", mode)
			got := oracleProbes(n)
			if inspects && mode == "auto" && queuedSinceBound(t, n.Server) > 0 {
				shared++
			}
			a.stop(t, syscall.SIGTERM)
			if !slices.Equal(got, want) {
				mismatches++
				t.Errorf("policy %d, --kernel-rules %s, --hooks %s: the agent and the nft reference disagree\npolicy:\n%s\nreference:\n%s\n%s",
					i, mode, strings.Join(p.hooks, ","), p.yaml(), ref, probeDiff(want, got))
			}
		}
		if mismatches >= 3 {
			t.Fatalf("stopping after %d mismatches", mismatches)
		}
	}
	if *oraclePolicies >= 4 && len(seen) < 2 {
		t.Errorf("all %d policies got the same answers from the reference: the generated policies decide nothing", *oraclePolicies)
	}
	if inspecting >= 5 && shared == 0 {
		t.Errorf("none of %d policies with a rule that needs userspace queued a packet with --kernel-rules auto", inspecting)
	}
	t.Logf("%d policies, %d different sets of answers; %d with a rule that needs userspace, %d of them queued packets with --kernel-rules auto",
		*oraclePolicies, len(seen), inspecting, shared)
}

// queuedSinceBound is how many packets the kernel queued to ns's queues
// since the running agent bound them.
func queuedSinceBound(t *testing.T, ns *testnet.NS) uint64 {
	var n uint64
	for _, q := range kernelQueues(t, ns) {
		n += q.IDSequence
	}
	return n
}

func probeDiff(want, got []string) string {
	var b strings.Builder
	for i := range want {
		mark := "  "
		if got[i] != want[i] {
			mark = "!="
		}
		fmt.Fprintf(&b, "%s reference: %s\n   agent:     %s\n", mark, want[i], got[i])
	}
	return b.String()
}

// nftLoad loads text with nft -f in ns.
func nftLoad(t *testing.T, ns *testnet.NS, text string) {
	t.Helper()
	cmd := ns.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s\n%s", err, out, text)
	}
}
