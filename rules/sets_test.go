package rules

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestAddSetSplitsElements buffers sets too large for one netlink message
// and decodes what would be sent: every element message stays within the
// 16-bit attribute length, names the set's transaction ID, and together
// they carry every element in order; the set's size covers them all.
func TestAddSetSplitsElements(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		elem  func(i int) nftables.SetElement
		isMap bool
	}{
		{"verdict map", 3000, func(i int) nftables.SetElement {
			return nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, uint16(i)), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: fmt.Sprintf("input_policy_%d", i)}}
		}, true},
		{"address set", 20000, func(i int) nftables.SetElement {
			return nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, 0x0a000000+uint32(i)), IntervalEnd: i%2 == 1}
		}, false},
		{"small set", 3, func(i int) nftables.SetElement {
			return nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, uint32(i))}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, got := captureConn(t)
			set := &nftables.Set{Table: ownTable(), Anonymous: true, Constant: true, IsMap: tt.isMap, KeyType: nftables.TypeInetService}
			if tt.isMap {
				set.DataType = nftables.TypeVerdict
			}
			var elems []nftables.SetElement
			for i := range tt.n {
				elems = append(elems, tt.elem(i))
			}
			if err := addSet(c, set, elems); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			var keys [][]byte
			size, msgs := uint32(0), 0
			for _, m := range *got {
				switch msgType(m) {
				case unix.NFT_MSG_NEWSET:
					size = setDescSize(t, m)
				case unix.NFT_MSG_NEWSETELEM:
					msgs++
					keys = append(keys, elemKeys(t, m, set.ID)...)
				}
			}
			if len(keys) != tt.n {
				t.Fatalf("%d elements in %d messages, want %d", len(keys), msgs, tt.n)
			}
			for i, k := range keys {
				if want := elems[i].Key; string(k) != string(want) {
					t.Fatalf("element %d key %x, want %x", i, k, want)
				}
			}
			if size != uint32(tt.n) {
				t.Errorf("set size %d, want %d", size, tt.n)
			}
			if tt.n > 2000 && msgs < 2 {
				t.Errorf("%d elements in one message", tt.n)
			}
		})
	}
}

// setDescSize is the size of the last set descriptor of a NEWSET message,
// the one the kernel takes.
func setDescSize(t *testing.T, m netlink.Message) uint32 {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	var size uint32
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_DESC {
			continue
		}
		ad.Nested(func(nd *netlink.AttributeDecoder) error {
			for nd.Next() {
				if nd.Type() == unix.NFTA_SET_DESC_SIZE {
					size = binary.BigEndian.Uint32(nd.Bytes())
				}
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return size
}

// elemKeys decodes a NEWSETELEM message strictly: its attributes must use
// the whole message (a wrapped length leaves bytes over or cuts one short),
// and it must name set ID id.
func elemKeys(t *testing.T, m netlink.Message, id uint32) [][]byte {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	gotID := uint32(0)
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_LIST_SET_ID:
			gotID = binary.BigEndian.Uint32(ad.Bytes())
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					list.Nested(func(el *netlink.AttributeDecoder) error {
						for el.Next() {
							if el.Type() == unix.NFTA_SET_ELEM_KEY {
								el.Nested(func(k *netlink.AttributeDecoder) error {
									for k.Next() {
										keys = append(keys, k.Bytes())
									}
									return nil
								})
							}
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		t.Fatalf("element message of %d bytes: %v", len(m.Data), err)
	}
	if len(m.Data) > 0xffff {
		t.Fatalf("element message of %d bytes", len(m.Data))
	}
	if gotID != id {
		t.Fatalf("element message names set %d, want %d", gotID, id)
	}
	return keys
}

// TestRuleExpressionListBound: a rule whose expressions would overflow the
// 16-bit length of their netlink attribute is refused before anything is
// buffered, and one just inside the bound is not. Nothing is sent: the
// connection is never flushed.
func TestRuleExpressionListBound(t *testing.T) {
	cmp := func(n int) rule {
		var stmts []stmt
		for range n {
			stmts = append(stmts, l4proto(unix.IPPROTO_UDP))
		}
		return rule{name: "long", stmts: stmts}
	}
	one, err := expr.Marshal(unix.NFPROTO_INET, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := expr.Marshal(unix.NFPROTO_INET, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1})
	if err != nil {
		t.Fatal(err)
	}
	per := 8 + len(one) + len(meta) // two list elements a statement
	fits := maxRuleExprBytes / per
	c, tbl := new(nftables.Conn), &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	ch := &nftables.Chain{Name: "x", Table: tbl}
	if err := cmp(fits).add(c, tbl, ch); err != nil {
		t.Fatalf("%d statements (%d bytes): %v", fits, fits*per, err)
	}
	err = cmp(fits+1).add(c, tbl, ch)
	if err == nil || !strings.Contains(err.Error(), `rule "long"`) {
		t.Fatalf("%d statements (%d bytes, over %d): err %v, want the rule refused", fits+1, (fits+1)*per, maxRuleExprBytes, err)
	}
}
