package l7

import (
	"fmt"
	"strings"
)

// maxPatternLen is the longest name a pattern may hold: RFC 1035's 255 wire
// bytes in dotted form without the trailing dot.
const maxPatternLen = 253

const (
	matchExact    uint8 = 1 << iota // the key itself matches
	matchWildcard                   // every name strictly below the key matches
)

// NameMatcher reports whether a DNS name falls under a set of patterns. It is
// read-only after construction and safe for concurrent use.
//
// A pattern is either a name, "exact.example", which matches that name only,
// or a wildcard, "*.suffix.example", which matches every name strictly below
// suffix.example at any depth (a.suffix.example, a.b.suffix.example) but not
// suffix.example itself; list both to match both. This is the reading of
// "*." in DNS zone files and TLS certificates, extended to any depth because
// a blocked zone's sub-zones belong to its owner too.
type NameMatcher struct {
	// flags holds, per name, matchExact and/or matchWildcard. One map
	// lookup per label of the queried name makes the cost independent of
	// the number of patterns.
	flags map[string]uint8
	// maxExact and maxSuffix bound the names worth looking up.
	maxExact, maxSuffix int
	// suffixLens marks the lengths of wildcard suffixes, so that most
	// parents of a long name are skipped without a lookup.
	suffixLens [4]uint64
}

// NewNameMatcher compiles patterns. They are folded to lower case, may end
// in one '.', and must be ASCII host names (letters, digits, '-', '_'; use
// the xn-- form for international names) of at most 253 characters and
// labels of 1 to 63; '*' may only be a whole first label followed by at least
// one more label ("*" alone would be every name: leave the field out
// instead). The error names the first bad pattern and why.
func NewNameMatcher(patterns []string) (*NameMatcher, error) {
	m := &NameMatcher{flags: make(map[string]uint8, len(patterns))}
	for _, p := range patterns {
		name, flag, err := parsePattern(p)
		if err != nil {
			return nil, fmt.Errorf("l7: name pattern %q: %w", p, err)
		}
		m.flags[name] |= flag
		if flag == matchExact {
			m.maxExact = max(m.maxExact, len(name))
		} else {
			m.maxSuffix = max(m.maxSuffix, len(name))
			m.suffixLens[len(name)/64] |= 1 << (len(name) % 64)
		}
	}
	return m, nil
}

// Len returns the number of distinct pattern names (a name given as both an
// exact and a wildcard pattern counts once).
func (m *NameMatcher) Len() int { return len(m.flags) }

func parsePattern(p string) (string, uint8, error) {
	name := strings.ToLower(p)
	name = strings.TrimSuffix(name, ".")
	flag := matchExact
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name, flag = rest, matchWildcard
	} else if name == "*" {
		return "", 0, fmt.Errorf(`"*" alone would match every name; omit the field instead`)
	}
	if err := validName(name); err != nil {
		return "", 0, err
	}
	return name, flag, nil
}

func validName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case len(name) > maxPatternLen:
		return fmt.Errorf("name is %d characters, the limit is %d", len(name), maxPatternLen)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return fmt.Errorf("empty label")
		}
		if len(label) > maxLabel {
			return fmt.Errorf("label %q is %d characters, the limit is %d", label, len(label), maxLabel)
		}
		for _, c := range []byte(label) {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case c == '*':
				return fmt.Errorf(`"*" is allowed only as the whole first label, as in "*.example.com"`)
			case c >= 0x80:
				return fmt.Errorf("non-ASCII name; write international names in their xn-- form")
			default:
				return fmt.Errorf("character %q is not allowed in a host name", c)
			}
		}
	}
	return nil
}

// Match reports whether name, in the dotted form DNSQueryName produces or as
// a TLS server name, is matched by a pattern. ASCII case is ignored and one
// trailing '.' is dropped. It does not allocate.
func (m *NameMatcher) Match(name []byte) bool {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if len(name) == 0 {
		return false
	}
	// Only the last maxPatternLen+1 bytes can take part in a match, so a
	// fixed buffer is enough to fold case without allocating.
	var buf [maxPatternLen + 1]byte
	whole := true
	if hasUpper(name) {
		if len(name) > len(buf) {
			name, whole = name[len(name)-len(buf):], false
		}
		name = ToLowerASCII(buf[:0], name)
	}
	if whole && len(name) <= m.maxExact && m.flags[string(name)]&matchExact != 0 {
		return true
	}
	if m.maxSuffix == 0 {
		return false
	}
	// A wildcard suffix of length l follows a '.' at len(name)-l-1.
	for i := max(0, len(name)-m.maxSuffix-1); i < len(name)-1; i++ {
		if name[i] != '.' {
			continue
		}
		l := len(name) - i - 1
		if m.suffixLens[l/64]&(1<<(l%64)) == 0 {
			continue
		}
		if m.flags[string(name[i+1:])]&matchWildcard != 0 {
			return true
		}
	}
	return false
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}
