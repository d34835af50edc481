package rules

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// The owner matches (policy fields uid, gid, cgroup) in nft, for the
// kernel fast path to splice into compiled rules. They test the same
// socket the queued path reads: `meta skuid/skgid` the owner of the
// packet's full socket (nft also takes a request socket's listener, so a
// listener's SYN-ACK has an owner here and none in NFQA_UID: see
// docs/design.md), `socket cgroupv2 level N` the cgroup of the packet's
// socket, looked up like sock_diag's exact lookup when the packet carries
// none. A packet without a socket matches none of them, negated or not,
// as in userspace.

// OwnerKey says which owner id a match tests.
type OwnerKey int

const (
	OwnerUID OwnerKey = iota // meta skuid
	OwnerGID                 // meta skgid
)

// IDRange is an inclusive range of uids or gids.
type IDRange struct{ Lo, Hi uint32 }

// OwnerIDMatch returns the expressions of a uid or gid match: the id is in
// one of pos (or pos is empty) and in none of neg. Ranges compare in
// network byte order, so the host-order id is converted first (as nft
// does for `meta skuid 1000-2000`). Several positive ranges are looked up
// in an anonymous interval set of table, which c adds.
func OwnerIDMatch(c SetAdder, table *nftables.Table, key OwnerKey, pos, neg []IDRange) ([]expr.Any, error) {
	if len(pos) == 0 && len(neg) == 0 {
		return nil, fmt.Errorf("rules: owner match with no ids")
	}
	for _, r := range append(slices.Clone(pos), neg...) {
		if r.Lo > r.Hi {
			return nil, fmt.Errorf("rules: owner range %d-%d: start above end", r.Lo, r.Hi)
		}
	}
	mk, typ := expr.MetaKeySKUID, nftables.TypeUID
	if key == OwnerGID {
		mk, typ = expr.MetaKeySKGID, nftables.TypeGID
	}
	out := []expr.Any{
		// Without a full socket meta skuid breaks the rule: no match.
		&expr.Meta{Key: mk, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
	}
	switch {
	case len(pos) == 1:
		out = append(out, rangeCmp(pos[0], false)...)
	case len(pos) > 1:
		set := &nftables.Set{
			Table: table, Anonymous: true, Constant: true, Interval: true,
			KeyType: typ, KeyByteOrder: binaryutil.BigEndian,
		}
		if err := addSet(c, set, intervalElements(pos)); err != nil {
			return nil, fmt.Errorf("rules: owner id set: %w", err)
		}
		out = append(out, &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
	}
	for _, r := range neg {
		out = append(out, rangeCmp(r, true)...)
	}
	return out, nil
}

// rangeCmp compares register 1, in network order, with r.
func rangeCmp(r IDRange, negate bool) []expr.Any {
	lo, hi := binary.BigEndian.AppendUint32(nil, r.Lo), binary.BigEndian.AppendUint32(nil, r.Hi)
	op := expr.CmpOpEq
	if negate {
		op = expr.CmpOpNeq
	}
	if r.Lo == r.Hi {
		return []expr.Any{&expr.Cmp{Op: op, Register: 1, Data: lo}}
	}
	return []expr.Any{&expr.Range{Op: op, Register: 1, FromData: lo, ToData: hi}}
}

// intervalElements turns ranges into the start/end elements of an interval
// set (end exclusive), merging overlaps: the kernel refuses overlapping
// intervals in a constant set.
func intervalElements(rs []IDRange) []nftables.SetElement {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b IDRange) int {
		switch {
		case a.Lo < b.Lo:
			return -1
		case a.Lo > b.Lo:
			return 1
		}
		return 0
	})
	var merged []IDRange
	for _, r := range rs {
		if n := len(merged); n > 0 && (r.Lo <= merged[n-1].Hi || merged[n-1].Hi != ^uint32(0) && r.Lo == merged[n-1].Hi+1) {
			merged[n-1].Hi = max(merged[n-1].Hi, r.Hi)
			continue
		}
		merged = append(merged, r)
	}
	var els []nftables.SetElement
	for _, r := range merged {
		els = append(els, nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, r.Lo)})
		if r.Hi != ^uint32(0) {
			els = append(els, nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, r.Hi+1), IntervalEnd: true})
		}
	}
	return els
}

// CgroupMatch returns the expressions of a cgroup match at one level: the
// packet's socket is in (or below) one of the cgroups with the given ids,
// all at depth level below the cgroup2 root (policies.CgroupDepth of the
// pattern; the ids are the cgroup directories' inode numbers,
// sockcgroup.ID). Several ids are looked up in an anonymous set of table,
// which c adds. With no ids (no such cgroup yet) the match cannot hold:
// ok is false, and the compiler must leave the rule out of the kernel (or
// queue it) until the cgroup appears and the policy is compiled again.
func CgroupMatch(c SetAdder, table *nftables.Table, level uint32, ids []uint64) (exprs []expr.Any, ok bool, err error) {
	if len(ids) == 0 || level == 0 {
		return nil, false, nil
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	exprs = []expr.Any{&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: level, Register: 1}}
	if len(ids) == 1 {
		return append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint64(nil, ids[0])}), true, nil
	}
	set := &nftables.Set{Table: table, Anonymous: true, Constant: true, KeyType: nftables.TypeCGroupV2}
	var els []nftables.SetElement
	for _, id := range ids {
		els = append(els, nftables.SetElement{Key: binary.NativeEndian.AppendUint64(nil, id)})
	}
	if err := addSet(c, set, els); err != nil {
		return nil, false, fmt.Errorf("rules: cgroup id set: %w", err)
	}
	return append(exprs, &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID}), true, nil
}
