package policyload

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/policies"
)

func validSetName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (l *loader) sets(n *yaml.Node) {
	if isNull(n) {
		return
	}
	fields, err := l.mapping(n, "sets", nil)
	if err != nil {
		l.record(n, err)
		return
	}
	for _, f := range fields {
		name := f.name
		if strings.HasPrefix(name, "$") {
			l.record(f.key, l.errorf(f.key, "set names are declared without $: write %q", strings.TrimPrefix(name, "$")))
			l.brokenSets[strings.TrimPrefix(name, "$")] = true
			continue
		}
		if !validSetName(name) {
			l.record(f.key, l.errorf(f.key, "invalid set name %q: use letters, digits, '_', '-' and '.'", name))
			l.brokenSets[name] = true
			continue
		}
		s := &policies.Set{Name: name, At: l.pos(f.key)}
		if errs := l.setBody(s, f.val); len(errs) > 0 {
			// Every bad entry, in order, placed at the set's key among the
			// policy's errors (a set file's lines are another file's).
			for _, e := range errs {
				l.record(f.key, e)
			}
			l.brokenSets[name] = true
			continue
		}
		l.p.Sets[name] = s
		l.setNames = append(l.setNames, name)
	}
}

// setBody reads a set's entries, inline or from its file, and returns
// every bad entry's error (up to MaxErrors; nil when the set is good).
func (l *loader) setBody(s *policies.Set, n *yaml.Node) []*policies.Error {
	n = resolve(n)
	if n != nil && n.Kind == yaml.MappingNode {
		fields, err := l.mapping(n, "set "+s.Name, setFileKeys)
		if err != nil {
			return []*policies.Error{err}
		}
		if len(fields) == 0 {
			return []*policies.Error{l.errorf(n, "set %s: expected a list or {file: PATH}", s.Name)}
		}
		return l.setFile(s, fields[0].val)
	}
	if n != nil && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		return nil // an empty set is legal; rules using it get a warning
	}
	items, err := l.list(n, "set "+s.Name)
	if err != nil {
		return []*policies.Error{err}
	}
	var errs []*policies.Error
	for _, it := range items {
		if len(errs) > policies.MaxErrors {
			break
		}
		if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
			errs = append(errs, l.errorf(it, "set %s: entries must be addresses, CIDRs, ports or names, got %s", s.Name, describe(it)))
			continue
		}
		if e := l.addEntry(s, scalarText(it), l.pos(it)); e != nil && e != errSkip {
			errs = append(errs, e)
		}
	}
	return errs
}

func (l *loader) setFile(s *policies.Set, n *yaml.Node) []*policies.Error {
	path, err := l.scalar(n, "set file")
	if err != nil {
		return []*policies.Error{err}
	}
	if l.readFile == nil {
		return []*policies.Error{l.errorf(n, "set %s: set files cannot be read here", s.Name)}
	}
	full := path
	if !filepath.IsAbs(path) {
		full = filepath.Join(filepath.Dir(l.file), path)
	}
	data, rerr := l.readFile(full)
	if rerr != nil {
		return []*policies.Error{l.errorf(n, "set %s: cannot read set file %q: %v", s.Name, full, rerr)}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	var errs []*policies.Error
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(errs) > policies.MaxErrors {
			break
		}
		text := string(line)
		if j := strings.IndexByte(text, '#'); j >= 0 {
			text = text[:j]
		}
		text = strings.TrimRight(text, " \t\r")
		trimmed := strings.TrimLeft(text, " \t")
		if trimmed == "" {
			continue
		}
		p := pos{File: full, Line: i + 1, Col: len(text) - len(trimmed) + 1}
		if strings.ContainsAny(trimmed, " \t,") {
			errs = append(errs, p.Errorf("set %s: one entry a line, got %q", s.Name, trimmed))
			continue
		}
		if e := l.addEntry(s, trimmed, p); e != nil && e != errSkip {
			errs = append(errs, e)
		}
	}
	return errs
}

// add classifies one entry and appends it; the first entry fixes the kind.
func (l *loader) addEntry(s *policies.Set, text string, p pos) *policies.Error {
	text = strings.TrimSpace(text)
	if strings.HasPrefix(text, "!") {
		return p.Errorf("set %s: %q: negation is not allowed inside a set; negate the reference instead (\"!$%s\")", s.Name, text, s.Name)
	}
	if strings.HasPrefix(text, "$") {
		return p.Errorf("set %s: %q: sets cannot refer to other sets", s.Name, text)
	}
	kind, pfx, pr, name, err := classify(text)
	if err != "" {
		return p.Errorf("set %s: %s", s.Name, err)
	}
	if s.Kind != policies.SetEmpty && kind != s.Kind {
		// Said once: the next entries of the other kind are the same fault.
		if l.mixedSets[s] {
			return errSkip
		}
		l.mixedSets[s] = true
		return p.Errorf("set %s mixes %s and %s entries: %q is a %s", s.Name, s.Kind, kind, text, kind)
	}
	s.Kind = kind
	switch kind {
	case policies.SetAddr:
		s.Prefixes = append(s.Prefixes, pfx)
	case policies.SetPort:
		s.Ports = append(s.Ports, pr)
	case policies.SetName:
		s.Names = append(s.Names, name)
	}
	return nil
}

// classify infers what one set entry is. err is a message, empty when ok.
func classify(text string) (kind policies.SetKind, pfx netip.Prefix, pr policies.PortRange, name string, err string) {
	if isPortText(text) {
		r, e := parsePortRange(text)
		if e != "" {
			return 0, pfx, pr, "", e
		}
		return policies.SetPort, pfx, r, "", ""
	}
	if p, e, ok := parseAddrOrPrefix(text); ok {
		if e != "" {
			return 0, pfx, pr, "", e
		}
		return policies.SetAddr, p, pr, "", ""
	}
	n, e := parseNamePattern(text)
	if e != "" {
		return 0, pfx, pr, "", e
	}
	return policies.SetName, pfx, pr, n, ""
}

func isPortText(s string) bool {
	if s == "" {
		return false
	}
	dash := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
		case c == '-' && i > 0 && !dash:
			dash = true
		default:
			return false
		}
	}
	return true
}

// parsePortRange parses "80" or "8000-8099".
func parsePortRange(s string) (policies.PortRange, string) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(lo, 10, 32)
	if err != nil || a > 65535 {
		return policies.PortRange{}, "invalid port " + strconv.Quote(lo) + ": ports are 0-65535"
	}
	if !isRange {
		return policies.PortRange{Lo: uint16(a), Hi: uint16(a)}, ""
	}
	b, err := strconv.ParseUint(hi, 10, 32)
	if err != nil || b > 65535 {
		return policies.PortRange{}, "invalid port " + strconv.Quote(hi) + ": ports are 0-65535"
	}
	if a > b {
		return policies.PortRange{}, "invalid port range " + strconv.Quote(s) + ": start is above end"
	}
	return policies.PortRange{Lo: uint16(a), Hi: uint16(b)}, ""
}

// parseAddrOrPrefix parses an address or CIDR. ok is false when text does
// not look like one at all; err is set when it looks like one but is wrong.
func parseAddrOrPrefix(text string) (p netip.Prefix, err string, ok bool) {
	if a, e := netip.ParseAddr(text); e == nil {
		if a.Zone() != "" {
			return p, "address " + strconv.Quote(text) + " has a zone; zones are not supported", true
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), "", true
	}
	addr, bitsText, hasSlash := strings.Cut(text, "/")
	if !hasSlash {
		if looksLikeAddr(text) {
			return p, "invalid address " + strconv.Quote(text), true
		}
		return p, "", false
	}
	a, e := netip.ParseAddr(addr)
	if e != nil {
		if looksLikeAddr(addr) {
			return p, "invalid CIDR " + strconv.Quote(text) + ": bad address", true
		}
		return p, "", false
	}
	if a.Zone() != "" {
		return p, "CIDR " + strconv.Quote(text) + " has a zone; zones are not supported", true
	}
	bits, e := strconv.Atoi(bitsText)
	if e != nil || bits < 0 || bits > a.BitLen() {
		return p, "invalid CIDR " + strconv.Quote(text) + ": prefix length must be 0-" + strconv.Itoa(a.BitLen()), true
	}
	if a.Is4In6() {
		if bits < 96 {
			return p, "invalid CIDR " + strconv.Quote(text) + ": IPv4-mapped prefix shorter than /96", true
		}
		a, bits = a.Unmap(), bits-96
	}
	p = netip.PrefixFrom(a, bits)
	if m := p.Masked(); m != p {
		return p, "CIDR " + strconv.Quote(text) + " has host bits set, did you mean " + m.String() + "?", true
	}
	return p, "", true
}

// looksLikeAddr is true for text made of address characters only, so that
// "10.0.0.256" is reported as a bad address rather than as a name.
func looksLikeAddr(s string) bool {
	if strings.Contains(s, ":") {
		return true
	}
	dots := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return dots > 0
}

// parseNamePattern validates a DNS name pattern: "exact.example" or
// "*.suffix.example", case-insensitive, trailing dot optional.
func parseNamePattern(text string) (string, string) {
	s := strings.ToLower(strings.TrimSuffix(text, "."))
	bad := func(why string) (string, string) {
		return "", strconv.Quote(text) + " is not an address, CIDR, port or name pattern: " + why
	}
	if s == "" {
		return bad("empty name")
	}
	if len(s) > 253 {
		return bad("longer than 253 characters")
	}
	labels := strings.Split(s, ".")
	for i, lab := range labels {
		if lab == "" {
			return bad("empty label")
		}
		if lab == "*" {
			if i != 0 {
				return bad("'*' is allowed only as the first label (*.example.com)")
			}
			if len(labels) == 1 {
				return bad("'*' alone matches every name; leave the field out instead")
			}
			continue
		}
		if len(lab) > 63 {
			return bad("label longer than 63 characters")
		}
		for _, c := range lab {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return bad("invalid character " + strconv.QuoteRune(c))
			}
		}
	}
	return s, ""
}
