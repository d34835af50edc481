package rules

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/fwagent/fwagent/internal/sockcgroup"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

type fakeSets struct {
	sets  []*nftables.Set
	elems [][]nftables.SetElement
}

func (f *fakeSets) AddSet(s *nftables.Set, e []nftables.SetElement) error {
	s.Name, s.ID = fmt.Sprintf("__set%d", len(f.sets)), uint32(len(f.sets)+1)
	f.sets, f.elems = append(f.sets, s), append(f.elems, e)
	return nil
}

// SetAddElements appends to the set AddSet recorded with s's ID.
func (f *fakeSets) SetAddElements(s *nftables.Set, e []nftables.SetElement) error {
	for i, have := range f.sets {
		if have.ID == s.ID {
			f.elems[i] = append(f.elems[i], e...)
			return nil
		}
	}
	return fmt.Errorf("no set with ID %d", s.ID)
}

func be(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func TestOwnerIDMatchExprs(t *testing.T) {
	tbl := &nftables.Table{Name: "t", Family: nftables.TableFamilyINet}
	var f fakeSets
	got, err := OwnerIDMatch(&f, tbl, OwnerUID, []IDRange{{0, 0}}, []IDRange{{5, 9}})
	if err != nil {
		t.Fatal(err)
	}
	want := []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be(0)},
		&expr.Range{Op: expr.CmpOpNeq, Register: 1, FromData: be(5), ToData: be(9)},
	}
	if fmt.Sprintf("%#v", derefAll(got)) != fmt.Sprintf("%#v", derefAll(want)) || len(f.sets) != 0 {
		t.Errorf("uid 0, !5-9:\n got %#v\nwant %#v (sets %d)", derefAll(got), derefAll(want), len(f.sets))
	}

	got, err = OwnerIDMatch(&f, tbl, OwnerGID, []IDRange{{1000, 1999}, {33, 33}, {1500, 2500}, {^uint32(0), ^uint32(0)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := got[0].(*expr.Meta); !ok || m.Key != expr.MetaKeySKGID {
		t.Errorf("gid match loads %#v", got[0])
	}
	lk, ok := got[len(got)-1].(*expr.Lookup)
	if !ok || len(f.sets) != 1 || lk.SetName != f.sets[0].Name || lk.SetID != f.sets[0].ID || !f.sets[0].Interval {
		t.Fatalf("several ranges: last expr %#v, sets %v", got[len(got)-1], f.sets)
	}
	// Sorted, overlaps merged, end exclusive, no end after the last id.
	var els []string
	for _, e := range f.elems[0] {
		els = append(els, fmt.Sprintf("%d%s", binary.BigEndian.Uint32(e.Key), map[bool]string{true: ")", false: "["}[e.IntervalEnd]))
	}
	if s := strings.Join(els, " "); s != "33[ 34) 1000[ 2501) 4294967295[" {
		t.Errorf("interval elements %s", s)
	}

	if _, err := OwnerIDMatch(&f, tbl, OwnerUID, nil, nil); err == nil {
		t.Error("empty match accepted")
	}
	if _, err := OwnerIDMatch(&f, tbl, OwnerUID, []IDRange{{2, 1}}, nil); err == nil {
		t.Error("backwards range accepted")
	}
}

func derefAll(es []expr.Any) []any {
	var out []any
	for _, e := range es {
		out = append(out, fmt.Sprintf("%T%+v", e, e))
	}
	return out
}

func TestCgroupMatchExprs(t *testing.T) {
	tbl := &nftables.Table{Name: "t", Family: nftables.TableFamilyINet}
	var f fakeSets
	if _, ok, _ := CgroupMatch(&f, tbl, 2, nil); ok {
		t.Error("no ids: the match should not exist")
	}
	got, ok, err := CgroupMatch(&f, tbl, 2, []uint64{77})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if s, ok := got[0].(*expr.Socket); !ok || s.Key != expr.SocketKeyCgroupv2 || s.Level != 2 {
		t.Errorf("loads %#v", got[0])
	}
	if c, ok := got[1].(*expr.Cmp); !ok || binary.NativeEndian.Uint64(c.Data) != 77 {
		t.Errorf("compares %#v", got[1])
	}
	got, _, _ = CgroupMatch(&f, tbl, 1, []uint64{9, 8, 9})
	if _, ok := got[1].(*expr.Lookup); !ok || len(f.sets) != 1 || len(f.elems[0]) != 2 || f.sets[0].KeyType != nftables.TypeCGroupV2 {
		t.Errorf("two ids: %#v, sets %v", got, f.elems)
	}
}

var counterRE = regexp.MustCompile(`counter packets (\d+) .* comment "(\w+)"`)

// TestKernelOwnerMatch loads the owner matches into a namespace's output
// chain, each with a counter, and sends one UDP datagram as root, one as
// uid 65534 and one from a test cgroup: each counter must count exactly the
// senders its match names.
func TestKernelOwnerMatch(t *testing.T) {
	requireKernel(t, "nft", "nsenter", "setpriv", "bash", "ip")
	ns := newTestNS(t)
	ns.mustRun(t, "", "ip", "link", "set", "lo", "up")
	cg := testnet.NewCgroup(t, "app.slice", "sender.service")
	top := strings.SplitN(cg.Path, "/", 2)[0]
	cgID, err := sockcgroup.ID(cg.Mount, cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sockcgroup.ID(cg.Mount, top)
	if err != nil {
		t.Fatal(err)
	}

	c := ns.conn(t)
	tbl := c.AddTable(&nftables.Table{Name: "owner", Family: nftables.TableFamilyINet})
	pol := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "out", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	udp9 := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{syscall.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 9}},
	}
	add := func(name string, m []expr.Any) {
		es := append(append(append([]expr.Any{}, udp9...), m...), &expr.Counter{})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: es, UserData: userdata.AppendString(nil, userdata.TypeComment, name)})
	}
	must := func(es []expr.Any, err error) []expr.Any {
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	add("all", nil)
	add("uid0", must(OwnerIDMatch(c, tbl, OwnerUID, []IDRange{{0, 0}}, nil)))
	add("notuid0", must(OwnerIDMatch(c, tbl, OwnerUID, nil, []IDRange{{0, 0}})))
	add("uidset", must(OwnerIDMatch(c, tbl, OwnerUID, []IDRange{{1000, 2000}, {65534, 65534}}, nil)))
	add("gidrange", must(OwnerIDMatch(c, tbl, OwnerGID, []IDRange{{65000, 65535}}, nil)))
	cgm := func(level uint32, ids ...uint64) []expr.Any {
		es, ok, err := CgroupMatch(c, tbl, level, ids)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		return es
	}
	add("cgroup", cgm(3, cgID))
	add("cgroupset", cgm(3, cgID, other))
	add("cgrouptop", cgm(1, other)) // the sender's ancestor at level 1
	add("cgroupother", cgm(3, other))
	if err := c.Flush(); err != nil {
		t.Fatalf("load owner matches: %v", err)
	}

	send := func(uid int, cgDir string) {
		t.Helper()
		args := []string{"--net=/proc/self/fd/3"}
		if uid >= 0 {
			args = append(args, "setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups")
		}
		args = append(args, "bash", "-c", "echo x > /dev/udp/127.0.0.1/9")
		cmd := exec.Command("nsenter", args...)
		cmd.ExtraFiles = []*os.File{ns.file}
		if cgDir != "" {
			fd, err := syscall.Open(cgDir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer syscall.Close(fd)
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("send as %d: %v %s", uid, err, out)
		}
	}
	send(-1, "")
	send(65534, "")
	send(-1, cg.Dir())

	got := map[string]string{}
	for _, m := range counterRE.FindAllStringSubmatch(ns.nft(t, "list", "chain", "inet", "owner", "out"), -1) {
		got[m[2]] = m[1]
	}
	want := map[string]string{"all": "3", "uid0": "2", "notuid0": "1", "uidset": "1", "gidrange": "1",
		"cgroup": "1", "cgroupset": "1", "cgrouptop": "1", "cgroupother": "0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counters %v, want %v\n%s", got, want, ns.nft(t, "list", "table", "inet", "owner"))
	}
}
