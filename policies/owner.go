package policies

import (
	"fmt"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// The owner fields, uid, gid and cgroup, match the local socket a packet
// belongs to. Which packets have one is the kernel's business and is
// documented in docs/policy.md ("Socket owner"): in short, output packets of
// local sockets, input packets of established local sockets, never
// forwarded packets. A packet without an owner matches no owner field,
// negated or not, as nft's `meta skuid != 0` does not match a packet
// without a socket either.

// IDRange is an inclusive range of user or group ids.
type IDRange struct{ Lo, Hi uint32 }

// IDMatch is a uid or gid match, with the logic of PortMatch: the id
// matches when it is inside one of Pos (or HasPos is false) and inside none
// of Neg. Set says the rule names the field; then a packet without an owner
// never matches.
type IDMatch struct {
	Set      bool
	HasPos   bool
	Pos, Neg []IDRange
}

// Matches reports whether id satisfies the match (which must be Set).
func (m *IDMatch) Matches(id uint32) bool {
	in := func(rs []IDRange) bool {
		for _, r := range rs {
			if id >= r.Lo && id <= r.Hi {
				return true
			}
		}
		return false
	}
	return (!m.HasPos || in(m.Pos)) && !in(m.Neg)
}

// CgroupFinder tells the cgroup v2 of the local socket a packet belongs to,
// as a path below the cgroup2 root without a leading slash ("" is the root
// cgroup). ok is false when the packet has no socket or the socket cannot be
// found. It is called only for packets a cgroup rule is a candidate for, at
// most once per Decide.
type CgroupFinder interface {
	Cgroup(pkt *packet.Packet, hook nf.Hook) (path string, ok bool)
}

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
	v, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %s has a non-numeric uid %q", name, u.Uid)
	}
	return uint32(v), nil
}

func (hostNames) LookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %s has a non-numeric gid %q", name, g.Gid)
	}
	return uint32(v), nil
}

// ownerHooks are the hooks where a packet can have a local socket.
const ownerHooks uint8 = 1<<nf.HookInput | 1<<nf.HookOutput

// ownerField reads uid, gid or cgroup into the rule's match.
func (l *loader) ownerField(r *Rule, f field, hookNode *yaml.Node) *Error {
	if r.Hooks&ownerHooks == 0 {
		return l.errorf(f.val, "%s never matches on hook %s: forwarded packets have no local socket, so the rule can never match", f.name, hookNames(r.Hooks))
	}
	m := &r.Match
	var err *Error
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
func (l *loader) idMatch(im *IDMatch, n *yaml.Node, field string) *Error {
	return signedEntries(l, n, field, &im.Pos, &im.Neg, &im.HasPos, func(it *yaml.Node, text string, neg bool) ([]IDRange, *Error) {
		// Set only matters once the whole list has read well: an error
		// drops the rule.
		im.Set = true
		if !strings.HasPrefix(text, "$") {
			r, e := l.idEntry(it, text, field)
			if e != nil {
				return nil, e
			}
			return []IDRange{r}, nil
		}
		set, err := l.idSet(it, text, field)
		if err != nil {
			return nil, err
		}
		if len(set.Ports) == 0 && len(set.Names) == 0 && !neg {
			l.warnEmptySet(it, field, text)
		}
		var rs []IDRange
		for _, p := range set.Ports {
			rs = append(rs, IDRange{uint32(p.Lo), uint32(p.Hi)})
		}
		for _, name := range set.Names {
			id, e := l.resolveID(it, name, field, " (in set "+text+")")
			if e != nil {
				return nil, e
			}
			rs = append(rs, IDRange{id, id})
		}
		return rs, nil
	})
}

// idSet looks up a set for uid or gid: its entries are numbers and ranges
// (a port set, so up to 65535; larger ids go in the rule itself) or names.
func (l *loader) idSet(n *yaml.Node, ref, field string) (*Set, *Error) {
	s, err := l.lookupSet(n, ref)
	if err != nil {
		return nil, err
	}
	if s.Kind == SetAddr {
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
func (l *loader) idEntry(n *yaml.Node, text, field string) (IDRange, *Error) {
	if isPortText(text) {
		lo, hi, isRange := strings.Cut(text, "-")
		a, e1 := strconv.ParseUint(lo, 10, 32)
		b := a
		var e2 error
		if isRange {
			b, e2 = strconv.ParseUint(hi, 10, 32)
		}
		if e1 != nil || e2 != nil {
			return IDRange{}, l.errorf(n, "%s %q out of range 0-4294967295", field, text)
		}
		if a > b {
			return IDRange{}, l.errorf(n, "%s range %q: start is above end", field, text)
		}
		return IDRange{uint32(a), uint32(b)}, nil
	}
	id, err := l.resolveID(n, text, field, "")
	if err != nil {
		return IDRange{}, err
	}
	return IDRange{id, id}, nil
}

// resolveID turns a user or group name into its id on this host.
func (l *loader) resolveID(n *yaml.Node, name, field, where string) (uint32, *Error) {
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
func (l *loader) cgroupPatterns(n *yaml.Node) ([]string, *Error) {
	var out []string
	err := l.eachEntry(n, "cgroup", func(it *yaml.Node, s string) *Error {
		p, e := ParseCgroupPattern(s)
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

// ParseCgroupPattern validates a cgroup path pattern and returns it in
// canonical form (no leading or trailing '/'). The message is empty when it
// is valid.
func ParseCgroupPattern(s string) (string, string) {
	if strings.HasPrefix(s, "!") {
		return "", "cgroup does not support negation"
	}
	if strings.HasPrefix(s, "$") {
		return "", "cgroup takes cgroup paths, not sets"
	}
	p := strings.Trim(s, "/")
	if p == "" {
		return "", fmt.Sprintf("cgroup %q is the root cgroup, which holds every socket: leave the field out instead", s)
	}
	if len(p) > 4096 {
		return "", "cgroup path is longer than 4096 characters"
	}
	if path.Clean("/"+p) != "/"+p {
		return "", fmt.Sprintf("cgroup %q is not a clean path (no empty, '.' or '..' components)", s)
	}
	for _, c := range p {
		if c < ' ' || c == 0x7f {
			return "", fmt.Sprintf("cgroup %q contains a control character", s)
		}
	}
	for _, comp := range strings.Split(p, "/") {
		if len(comp) > 255 {
			return "", fmt.Sprintf("cgroup %q has a component longer than 255 characters", s)
		}
	}
	return p, ""
}

// CgroupDepth is the number of components of a canonical pattern: the
// level nft's `socket cgroupv2 level N` compares at.
func CgroupDepth(pattern string) int { return strings.Count(pattern, "/") + 1 }

// CgroupMatch reports whether the cgroup at path (below the root, no
// leading '/') is the one pattern names or lies below it. '*' matches any
// run of characters within one component.
func CgroupMatch(pattern, cgpath string) bool {
	for {
		pc, prest, pmore := strings.Cut(pattern, "/")
		if cgpath == "" {
			return false
		}
		cc, crest, _ := strings.Cut(cgpath, "/")
		if !globMatch(pc, cc) {
			return false
		}
		if !pmore {
			return true
		}
		pattern, cgpath = prest, crest
	}
}

// checkOwner tests a candidate's owner fields. A packet without the owner
// a field needs may get one later in its flow (an input flow's first
// packets reach no socket yet, a listener's SYN-ACK carries a request
// socket), so that skip taints; an owner that does not match is fixed for
// the flow.
func (p *Program) checkOwner(e *ruleExec, in *Input) (bool, uint8) {
	if e.uid.Set {
		if !in.HasUID {
			return false, taintPacket
		}
		if !e.uid.Matches(in.UID) {
			return false, 0
		}
	}
	if e.gid.Set {
		if !in.HasGID {
			return false, taintPacket
		}
		if !e.gid.Matches(in.GID) {
			return false, 0
		}
	}
	if len(e.cgroups) > 0 {
		cg, ok := in.cgroup()
		if !ok {
			return false, taintPacket
		}
		matched := false
		for _, pat := range e.cgroups {
			if CgroupMatch(pat, cg) {
				matched = true
				break
			}
		}
		if !matched {
			return false, 0
		}
	}
	return true, 0
}

// cgroup asks the finder once per Decide.
func (in *Input) cgroup() (string, bool) {
	switch in.cgroupState {
	case 1:
		return in.cgroupPath, true
	case 2:
		return "", false
	}
	in.cgroupState = 2
	if in.Cgroups == nil || in.Pkt == nil {
		return "", false
	}
	cg, ok := in.Cgroups.Cgroup(in.Pkt, in.Hook)
	if ok {
		in.cgroupState, in.cgroupPath = 1, cg
	}
	return cg, ok
}

// ownerCovers reports whether a's owner fields hold for every packet b's
// hold for (false when unsure).
func ownerCovers(a, b *Match) bool {
	idCovers := func(x, y *IDMatch) bool {
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

// staticCgroup is the CgroupFinder of a policy test packet.
type staticCgroup string

func (s staticCgroup) Cgroup(*packet.Packet, nf.Hook) (string, bool) { return string(s), true }

// testOwner reads a test packet's uid, gid (a number or a name) or cgroup
// (a path, no patterns).
func (l *loader) testOwner(tp *TestPacket, field string, v *yaml.Node) *Error {
	s, err := l.scalar(v, field)
	if err != nil {
		return err
	}
	if field == "cgroup" {
		p, e := ParseCgroupPattern(s)
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
