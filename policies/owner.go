package policies

import (
	"fmt"
	"path"
	"strings"

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
