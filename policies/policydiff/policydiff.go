// Package policydiff compares two policies the way a reviewer reads a
// change: rules added, removed, changed and moved (by name), sets changed,
// defaults, on_error and mode changed; and, over a capture, the packets and
// flows whose verdict or deciding rule the change alters. It backs
// `fwagent diff`.
package policydiff

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// Change is one difference between two policies.
type Change struct {
	// Kind is mode, default, on_error, set-added, set-removed, set-changed,
	// rule-added, rule-removed, rule-changed or rule-moved.
	Kind string `json:"kind"`
	// Name is the rule or set concerned (without $), or the hook.
	Name string `json:"name,omitempty"`
	// Fields lists what changed in a rule (action, hook, match.dport, ...).
	Fields []string `json:"fields,omitempty"`
	// Old and New describe the values where they are short; Detail says
	// more (entries added and removed, positions).
	Old    string `json:"old,omitempty"`
	New    string `json:"new,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Line is the rule's or set's line in the new policy (the old one for
	// what was removed).
	Line int `json:"line,omitempty"`
}

// String is the change as one line of `fwagent diff` output.
func (c Change) String() string {
	var b strings.Builder
	switch c.Kind {
	case "mode":
		fmt.Fprintf(&b, "mode: %s -> %s", c.Old, c.New)
	case "default", "on_error":
		fmt.Fprintf(&b, "%s %s: %s -> %s", c.Kind, c.Name, c.Old, c.New)
	case "set-added", "set-removed", "set-changed":
		fmt.Fprintf(&b, "set $%s %s", c.Name, strings.TrimPrefix(c.Kind, "set-"))
	case "rule-added", "rule-removed", "rule-moved":
		fmt.Fprintf(&b, "rule %q %s", c.Name, strings.TrimPrefix(c.Kind, "rule-"))
	case "rule-changed":
		fmt.Fprintf(&b, "rule %q changed: %s", c.Name, strings.Join(c.Fields, ", "))
	default:
		fmt.Fprintf(&b, "%s %s", c.Kind, c.Name)
	}
	if c.Kind == "rule-changed" && c.Old != "" {
		fmt.Fprintf(&b, " (action %s -> %s)", c.Old, c.New)
	}
	if c.Detail != "" {
		fmt.Fprintf(&b, " (%s)", c.Detail)
	}
	if c.Line > 0 {
		fmt.Fprintf(&b, " [line %d]", c.Line)
	}
	return b.String()
}

// Compare lists the differences from old to new: mode, defaults and
// on_error first, then sets by name, then rules in the new policy's order,
// then the removed rules in the old one's.
func Compare(old, new *policies.Policy) []Change {
	var out []Change
	if old.Audit != new.Audit {
		out = append(out, Change{Kind: "mode", Old: mode(old.Audit), New: mode(new.Audit)})
	}
	for h := nf.Hook(0); h < nf.NumHooks; h++ {
		if old.Default[h] != new.Default[h] {
			out = append(out, Change{Kind: "default", Name: h.String(), Old: old.Default[h].String(), New: new.Default[h].String()})
		}
	}
	if old.DefaultLog != new.DefaultLog {
		out = append(out, Change{Kind: "default", Name: "log", Old: fmt.Sprint(old.DefaultLog), New: fmt.Sprint(new.DefaultLog)})
	}
	for h := nf.Hook(0); h < nf.NumHooks; h++ {
		if old.OnError[h] != new.OnError[h] {
			out = append(out, Change{Kind: "on_error", Name: h.String(), Old: old.OnError[h].String(), New: new.OnError[h].String()})
		}
	}
	out = append(out, compareSets(old, new)...)
	out = append(out, compareRules(old, new)...)
	return out
}

func mode(audit bool) string {
	if audit {
		return "audit"
	}
	return "enforce"
}

func compareSets(old, new *policies.Policy) []Change {
	var names []string
	for n := range old.Sets {
		names = append(names, n)
	}
	for n := range new.Sets {
		if _, ok := old.Sets[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []Change
	for _, n := range names {
		o, inOld := old.Sets[n]
		nw, inNew := new.Sets[n]
		switch {
		case !inNew:
			out = append(out, Change{Kind: "set-removed", Name: n})
		case !inOld:
			out = append(out, Change{Kind: "set-added", Name: n, Detail: fmt.Sprintf("%d entries", len(entries(nw)))})
		default:
			a, b := entries(o), entries(nw)
			added, removed := minus(b, a), minus(a, b)
			if len(added) == 0 && len(removed) == 0 {
				continue
			}
			var d []string
			if len(added) > 0 {
				d = append(d, "+"+strings.Join(clip(added), " +"))
			}
			if len(removed) > 0 {
				d = append(d, "-"+strings.Join(clip(removed), " -"))
			}
			out = append(out, Change{Kind: "set-changed", Name: n, Detail: strings.Join(d, " ")})
		}
	}
	return out
}

// clip keeps a long list of entries readable.
func clip(s []string) []string {
	const most = 8
	if len(s) <= most {
		return s
	}
	return append(slices.Clone(s[:most]), fmt.Sprintf("... (%d more)", len(s)-most))
}

func entries(s *policies.Set) []string {
	var out []string
	for _, p := range s.Prefixes {
		if p.Bits() == p.Addr().BitLen() {
			out = append(out, p.Addr().String())
		} else {
			out = append(out, p.String())
		}
	}
	for _, r := range s.Ports {
		if r.Lo == r.Hi {
			out = append(out, fmt.Sprint(r.Lo))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
		}
	}
	out = append(out, s.Names...)
	return out
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func compareRules(old, new *policies.Policy) []Change {
	oldBy := map[string]int{}
	for i, r := range old.Rules {
		oldBy[r.Name] = i
	}
	newBy := map[string]int{}
	for i, r := range new.Rules {
		newBy[r.Name] = i
	}
	// Rules in both, in each policy's order; those off the longest common
	// subsequence moved.
	var co, cn []string
	for _, r := range old.Rules {
		if _, ok := newBy[r.Name]; ok {
			co = append(co, r.Name)
		}
	}
	for _, r := range new.Rules {
		if _, ok := oldBy[r.Name]; ok {
			cn = append(cn, r.Name)
		}
	}
	stay := lcs(co, cn)

	var out []Change
	for _, r := range new.Rules {
		i, inOld := oldBy[r.Name]
		if !inOld {
			out = append(out, Change{Kind: "rule-added", Name: r.Name, Line: line(r)})
			continue
		}
		o := old.Rules[i]
		if f := ruleFields(o, r); len(f) > 0 {
			c := Change{Kind: "rule-changed", Name: r.Name, Fields: f, Line: line(r)}
			if o.Action != r.Action {
				c.Old, c.New = o.Action.String(), r.Action.String()
			}
			out = append(out, c)
		}
		if !stay[r.Name] {
			out = append(out, Change{Kind: "rule-moved", Name: r.Name, Line: line(r),
				Detail: fmt.Sprintf("rule %d of %d -> rule %d of %d", i+1, len(old.Rules), newBy[r.Name]+1, len(new.Rules))})
		}
	}
	// Removed rules last, in their old order: they have no place in the
	// new file to be listed at.
	for _, r := range old.Rules {
		if _, kept := newBy[r.Name]; !kept {
			out = append(out, Change{Kind: "rule-removed", Name: r.Name, Line: line(r)})
		}
	}
	return out
}

func line(r *policies.Rule) int {
	// Pos is FILE:LINE:COL; the file name may hold colons.
	p := r.Pos()
	parts := strings.Split(p, ":")
	if len(parts) < 3 {
		return 0
	}
	var n int
	fmt.Sscan(parts[len(parts)-2], &n)
	return n
}

// lcs marks the names on a longest common subsequence of a and b.
func lcs(a, b []string) map[string]bool {
	n, m := len(a), len(b)
	t := make([][]int, n+1)
	for i := range t {
		t[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	out := map[string]bool{}
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case a[i] == b[j]:
			out[a[i]] = true
			i++
			j++
		case t[i+1][j] >= t[i][j+1]:
			i++
		default:
			j++
		}
	}
	return out
}

// matchKey names a Match field as the policy file does (ICMP4Types and
// ICMP6Types are icmp_type; a field added later gets its snake-case name).
var matchKey = map[string]string{
	"Protos": "proto", "Family": "family", "Src": "src", "Dst": "dst", "Sport": "sport", "Dport": "dport",
	"Iif": "iif", "Oif": "oif", "States": "state", "TCPFlags": "tcp_flags", "HasICMPType": "icmp_type",
	"ICMP4Types": "icmp_type", "ICMP6Types": "icmp_type", "Length": "length", "DNSQName": "dns_qname",
	"TLSSNI": "tls_sni", "Payload": "payload",
}

func snake(s string) string {
	var b strings.Builder
	for i, c := range s {
		if unicode.IsUpper(c) && i > 0 && !unicode.IsUpper(rune(s[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// ruleFields names what differs between two rules of the same name, as
// the policy file's keys. Sets are resolved, so a set's change shows as
// the fields of the rules that use it.
func ruleFields(a, b *policies.Rule) []string {
	var out []string
	add := func(cond bool, name string) {
		if cond && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	add(a.Hooks != b.Hooks, "hook")
	va, vb := reflect.ValueOf(a.Match), reflect.ValueOf(b.Match)
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		name, ok := matchKey[f.Name]
		if !ok {
			name = snake(f.Name)
		}
		add(!reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()), "match."+name)
	}
	add(a.Action != b.Action, "action")
	add(a.Log != b.Log || a.LogPrefix != b.LogPrefix, "log")
	add(!reflect.DeepEqual(a.Limit, b.Limit), "limit")
	add(a.HasMark != b.HasMark || a.Mark != b.Mark, "mark")
	add(!reflect.DeepEqual(a.Offload, b.Offload), "offload")
	add(a.Audit != b.Audit, "audit")
	return out
}

// flowKey is a flow seen from either side: its endpoints in a fixed order.
type flowKey struct {
	proto uint8
	a, b  netip.AddrPort
}

func makeFlowKey(proto uint8, src, dst netip.AddrPort) flowKey {
	if src.Addr().Less(dst.Addr()) || src.Addr() == dst.Addr() && src.Port() < dst.Port() {
		return flowKey{proto, src, dst}
	}
	return flowKey{proto, dst, src}
}
