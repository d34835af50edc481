package policyload

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// NameResolver resolves user and group names to ids at load. The default
// reads the host's user database (os/user).
type NameResolver interface {
	LookupUser(name string) (uint32, error)
	LookupGroup(name string) (uint32, error)
}

type hostNames struct{}

func (hostNames) LookupUser(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	return numericID("user", name, "uid", u.Uid)
}

func (hostNames) LookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return numericID("group", name, "gid", g.Gid)
}

// numericID is the id the user database gave for the user or group name.
func numericID(what, name, field, id string) (uint32, error) {
	v, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %s has a non-numeric %s %q", what, name, field, id)
	}
	return uint32(v), nil
}

// ownerHooks are the hooks where a packet can have a local socket.
const ownerHooks uint8 = 1<<nf.HookInput | 1<<nf.HookOutput

// ownerField reads uid, gid or cgroup into the rule's match.
func (l *loader) ownerField(r *policies.Rule, f field, hookNode *yaml.Node) *policies.Error {
	if r.Hooks&ownerHooks == 0 {
		return l.errorf(f.val, "%s never matches on hook %s: forwarded packets have no local socket, so the rule can never match", f.name, hookNames(r.Hooks))
	}
	m := &r.Match
	var err *policies.Error
	switch f.name {
	case "uid":
		err = l.idMatch(&m.UID, f.val, "uid")
	case "gid":
		err = l.idMatch(&m.GID, f.val, "gid")
	case "cgroup":
		m.Cgroup, err = l.cgroupPatterns(f.val)
	}
	if err != nil {
		return err
	}
	if hookNode != nil && r.Hooks&^ownerHooks != 0 {
		l.warnf(l.pos(f.val), "rule %q: %s never matches on hook forward (no local socket), so the rule applies to %s only", r.Name, f.name, hookNames(r.Hooks&ownerHooks))
	}
	r.Hooks &= ownerHooks
	l.evalWarnf(l.pos(f.key), "rule %q matches %s, but captures carry no socket owner: under fwagent eval it never matches", r.Name, f.name)
	return nil
}

func (l *loader) evalWarnf(p pos, format string, args ...any) {
	l.p.EvalWarnings = append(l.p.EvalWarnings, p.String()+": warning: "+fmt.Sprintf(format, args...))
}

func (l *loader) names() NameResolver {
	if l.nameResolver != nil {
		return l.nameResolver
	}
	return hostNames{}
}

// idMatch reads a uid or gid field: ids, ranges a-b, names, $sets of ids
// or names, each optionally negated.
func (l *loader) idMatch(im *policies.IDMatch, n *yaml.Node, field string) *policies.Error {
	return signedEntries(l, n, field, &im.Pos, &im.Neg, &im.HasPos, func(it *yaml.Node, text string, neg bool) ([]policies.IDRange, *policies.Error) {
		// Set only matters once the whole list has read well: an error
		// drops the rule.
		im.Set = true
		if !strings.HasPrefix(text, "$") {
			r, e := l.idEntry(it, text, field)
			if e != nil {
				return nil, e
			}
			return []policies.IDRange{r}, nil
		}
		set, err := l.idSet(it, text, field)
		if err != nil {
			return nil, err
		}
		if len(set.Ports) == 0 && len(set.Names) == 0 && !neg {
			l.warnEmptySet(it, field, text)
		}
		var rs []policies.IDRange
		for _, p := range set.Ports {
			rs = append(rs, policies.IDRange{Lo: uint32(p.Lo), Hi: uint32(p.Hi)})
		}
		for _, name := range set.Names {
			id, e := l.resolveID(it, name, field, " (in set "+text+")")
			if e != nil {
				return nil, e
			}
			rs = append(rs, policies.IDRange{Lo: id, Hi: id})
		}
		return rs, nil
	})
}

// idSet looks up a set for uid or gid: its entries are numbers and ranges
// (a port set, so up to 65535; larger ids go in the rule itself) or names.
func (l *loader) idSet(n *yaml.Node, ref, field string) (*policies.Set, *policies.Error) {
	s, err := l.lookupSet(n, ref)
	if err != nil {
		return nil, err
	}
	if s.Kind == policies.SetAddr {
		return nil, l.errorf(n, "set %s is an address set; %s needs a set of ids or %s names", ref, field, ownerWord(field))
	}
	return s, nil
}

func ownerWord(field string) string {
	if field == "gid" {
		return "group"
	}
	return "user"
}

// idEntry parses one id, range or name.
func (l *loader) idEntry(n *yaml.Node, text, field string) (policies.IDRange, *policies.Error) {
	if isPortText(text) {
		lo, hi, isRange := strings.Cut(text, "-")
		a, e1 := strconv.ParseUint(lo, 10, 32)
		b := a
		var e2 error
		if isRange {
			b, e2 = strconv.ParseUint(hi, 10, 32)
		}
		if e1 != nil || e2 != nil {
			return policies.IDRange{}, l.errorf(n, "%s %q out of range 0-4294967295", field, text)
		}
		if a > b {
			return policies.IDRange{}, l.errorf(n, "%s range %q: start is above end", field, text)
		}
		return policies.IDRange{Lo: uint32(a), Hi: uint32(b)}, nil
	}
	id, err := l.resolveID(n, text, field, "")
	if err != nil {
		return policies.IDRange{}, err
	}
	return policies.IDRange{Lo: id, Hi: id}, nil
}

// resolveID turns a user or group name into its id on this host.
func (l *loader) resolveID(n *yaml.Node, name, field, where string) (uint32, *policies.Error) {
	if !validOwnerName(name) {
		return 0, l.errorf(n, "%s must be a number, a range a-b, a %s name or a $set, got %q", field, ownerWord(field), name)
	}
	var id uint32
	var err error
	if field == "gid" {
		id, err = l.names().LookupGroup(name)
	} else {
		id, err = l.names().LookupUser(name)
	}
	if err != nil {
		var unknown bool
		switch err.(type) {
		case user.UnknownUserError, user.UnknownGroupError:
			unknown = true
		}
		if unknown || strings.Contains(err.Error(), "unknown") {
			return 0, l.errorf(n, "unknown %s %q%s on this host", ownerWord(field), name, where)
		}
		return 0, l.errorf(n, "cannot resolve %s %q%s: %v", ownerWord(field), name, where, err)
	}
	return id, nil
}

// validOwnerName accepts the names useradd and systemd accept: letters,
// digits, '_', '-', '.', and a trailing '$' (Samba machine accounts), not
// starting with '-'.
func validOwnerName(s string) bool {
	if s == "" || len(s) > 256 || s[0] == '-' {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		case c == '$' && i == len(s)-1:
		default:
			return false
		}
	}
	return true
}

// cgroupPatterns reads cgroup paths: below the cgroup2 root, with or
// without a leading '/', '*' matching within one path component. A pattern
// matches a socket's cgroup when it names that cgroup or one of its
// ancestors (as nft's `socket cgroupv2 level N` does), so a unit's pattern
// covers the unit's sub-cgroups too.
func (l *loader) cgroupPatterns(n *yaml.Node) ([]string, *policies.Error) {
	var out []string
	err := l.eachEntry(n, "cgroup", func(it *yaml.Node, s string) *policies.Error {
		p, e := policies.ParseCgroupPattern(s)
		if e != "" {
			return l.errorf(it, "%s", e)
		}
		if slices.Contains(out, p) {
			return l.errorf(it, "cgroup %s listed twice", s)
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ownerCovers reports whether a's owner fields hold for every packet b's
// hold for (false when unsure).
func ownerCovers(a, b *policies.Match) bool {
	idCovers := func(x, y *policies.IDMatch) bool {
		if !x.Set {
			return true
		}
		return y.Set && x.HasPos == y.HasPos && slices.Equal(x.Pos, y.Pos) && slices.Equal(x.Neg, y.Neg)
	}
	if !idCovers(&a.UID, &b.UID) || !idCovers(&a.GID, &b.GID) {
		return false
	}
	return len(a.Cgroup) == 0 || slices.Equal(a.Cgroup, b.Cgroup)
}

// testOwner reads a test packet's uid, gid (a number or a name) or cgroup
// (a path, no patterns).
func (l *loader) testOwner(tp *policies.TestPacket, field string, v *yaml.Node) *policies.Error {
	s, err := l.scalar(v, field)
	if err != nil {
		return err
	}
	if field == "cgroup" {
		p, e := policies.ParseCgroupPattern(s)
		if e != "" {
			return l.errorf(v, "test packet %s", e)
		}
		if strings.Contains(p, "*") {
			return l.errorf(v, "test packet cgroup must be a path, got the pattern %q", s)
		}
		tp.Cgroup = p
		return nil
	}
	var id uint32
	if x, perr := strconv.ParseUint(s, 10, 32); perr == nil {
		id = uint32(x)
	} else if id, err = l.resolveID(v, s, field, ""); err != nil {
		return err
	}
	if field == "uid" {
		tp.HasUID, tp.UID = true, id
	} else {
		tp.HasGID, tp.GID = true, id
	}
	return nil
}
