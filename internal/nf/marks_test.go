package nf

import (
	"fmt"
	"strings"
	"testing"
)

func TestNewMarks(t *testing.T) {
	tests := []struct {
		mask   uint32
		errSub string
		maxID  uint32
	}{
		{DefaultMarkMask, "", 1<<13 - 1},
		{0x0001ff00, "", 63},
		{0x00ff0000, "", 31}, // the Calico neighbour mask of docs/operations.md
		{0xffffffff, "", 1<<29 - 1},
		{0, "zero", 0},
		{0x00ff00ff, "contiguous", 0},
		{0x0000007f, "need at least 8", 0},
	}
	for _, tt := range tests {
		m, err := NewMarks(tt.mask)
		if (err == nil) != (tt.errSub == "") || err != nil && !strings.Contains(err.Error(), tt.errSub) {
			t.Errorf("NewMarks(%#x) error %v, want %q", tt.mask, err, tt.errSub)
			continue
		}
		if err == nil && m.MaxID() != tt.maxID {
			t.Errorf("NewMarks(%#x).MaxID() = %d, want %d", tt.mask, m.MaxID(), tt.maxID)
		}
	}
}

func TestMarksEncode(t *testing.T) {
	m, err := NewMarks(DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		old    uint32
		a      MarkAction
		id     uint32
		want   uint32
		wantID uint32
	}{
		{"drop log rule 1", 0, MarkDropLog, 1, 0x00090000, 1},
		{"keeps foreign bits, clears ours", 0xabcd_1234, MarkReject, 2, 0x0012_1234, 2},
		{"clamps id", 0, MarkAcceptLog, 1 << 20, 0xfffc0000, 8191},
		{"none", 0x0018_0001, MarkNone, 0, 0x0000_0001, 0},
	}
	for _, tt := range tests {
		got := m.Encode(tt.old, tt.a, tt.id)
		if got != tt.want {
			t.Errorf("%s: Encode = %#08x, want %#08x", tt.name, got, tt.want)
		}
		a, est, id := m.Decode(got)
		if a != tt.a || est || id != tt.wantID {
			t.Errorf("%s: Decode = %v %v %d", tt.name, a, est, id)
		}
	}
	if _, est, _ := m.Decode(0x00080000); !est {
		t.Error("established bit not decoded")
	}
	if !m.Related(0x00100000) || m.Related(0x00080000) {
		t.Error("related bit not decoded on its own")
	}
	if m.EstablishedBit() != 0x00080000 || m.RelatedBit() != 0x00100000 || m.InvalidBit() != 0x00200000 || m.ActionMask() != 0x00070000 || m.IDMask() != 0xfff80000 {
		t.Errorf("masks: est %#x rel %#x inv %#x act %#x id %#x", m.EstablishedBit(), m.RelatedBit(), m.InvalidBit(), m.ActionMask(), m.IDMask())
	}
	if m.OffloadBits() != 0x003f0000 || m.GenMask() != 0xffc00000 || m.MaxGen() != 1023 {
		t.Errorf("connmark: offload %#x gen %#x max %d", m.OffloadBits(), m.GenMask(), m.MaxGen())
	}
	// An ID never reads as a state, nor a state as an ID.
	if m.Related(m.Encode(0, MarkDropLog, 2)) || m.State(0x00100000) != StateRelated {
		t.Error("related bit read through an action")
	}
	if a, _, id := m.Decode(0x00100000); a != MarkNone || id != 0 {
		t.Errorf("state bits decoded as id %d", id)
	}
}

func TestOffloadMark(t *testing.T) {
	m, err := NewMarks(0x0003ff00) // MaxGen 15
	if err != nil {
		t.Fatal(err)
	}
	if m.MaxGen() != 15 {
		t.Fatalf("MaxGen %d", m.MaxGen())
	}
	for _, gen := range []uint32{0, 1, 15, 16, 17, 1 << 31} {
		pm := m.OffloadMark(0x1234_00ff, gen)
		if pm&^m.Mask != 0x1234_00ff {
			t.Errorf("gen %d: foreign bits changed: %#x", gen, pm)
		}
		if pm&(m.ActionMask()|m.IDMask()) != m.OffloadRequest(gen) {
			t.Errorf("gen %d: packet mark %#x does not carry the request %#x the rules match", gen, pm, m.OffloadRequest(gen))
		}
		a, _, id := m.Decode(pm)
		if a != MarkOffload || id != gen%16 {
			t.Errorf("gen %d: decoded %v id %d", gen, a, id)
		}
		if m.ConnGen(gen) != (gen%16)<<14 {
			t.Errorf("gen %d: conntrack generation %#x", gen, m.ConnGen(gen))
		}
	}
}

// TestOffloadBits checks that every hook and direction has its own bit, so
// a decision at one never offloads another (#13: offload crossed hooks).
func TestOffloadBits(t *testing.T) {
	m, err := NewMarks(DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]string{}
	for h := HookInput; h < NumHooks; h++ {
		for _, reply := range []bool{false, true} {
			b := m.OffloadBit(h, reply)
			if b&m.OffloadBits() != b || b&(b-1) != 0 {
				t.Errorf("%v reply=%v: bit %#x not one offload bit", h, reply, b)
			}
			if other, dup := seen[b]; dup {
				t.Errorf("%v reply=%v shares bit %#x with %s", h, reply, b, other)
			}
			seen[b] = fmt.Sprint(h, reply)
			cm := b | m.ConnGen(5)
			for h2 := HookInput; h2 < NumHooks; h2++ {
				for _, r2 := range []bool{false, true} {
					if got, want := m.Offloaded(cm, h2, r2, 5), h2 == h && r2 == reply; got != want {
						t.Errorf("connmark %#x set at %v/%v: Offloaded(%v, %v) = %v", cm, h, reply, h2, r2, got)
					}
				}
			}
			if m.Offloaded(cm, h, reply, 6) {
				t.Errorf("connmark %#x offloads under another generation", cm)
			}
		}
	}
}

func TestStateMatch(t *testing.T) {
	m, err := NewMarks(0x00ff0000)
	if err != nil {
		t.Fatal(err)
	}
	kernel := map[State]uint32{StateNew: 0, StateEstablished: m.EstablishedBit(), StateRelated: m.RelatedBit(), StateInvalid: m.InvalidBit()}
	for s, mark := range kernel {
		mark |= 0x1234 // foreign bits
		if got := m.State(mark); got != s {
			t.Errorf("State(%#x) = %v, want %v", mark, got, s)
		}
		for s2 := range kernel {
			mask, v := m.StateMatch(s2)
			if got := mark&mask == v; got != (s == s2) {
				t.Errorf("StateMatch(%v) on a %v packet = %v", s2, s, got)
			}
		}
	}
}

func TestMarksZeroAlloc(t *testing.T) {
	m, _ := NewMarks(DefaultMarkMask)
	var sink uint32
	n := testing.AllocsPerRun(100, func() {
		v := m.Encode(sink, MarkDropLog, 7)
		a, _, id := m.Decode(v)
		sink = v + uint32(a) + id + m.OffloadMark(v, 3)
	})
	if n != 0 {
		t.Fatalf("Encode/Decode allocate %v times per call", n)
	}
}

// FuzzMarks checks the layout invariants for any mask NewMarks accepts: bits
// outside the mask survive, and what Encode writes Decode reads back.
func FuzzMarks(f *testing.F) {
	f.Add(DefaultMarkMask, uint32(0), uint32(1), uint32(1))
	f.Add(uint32(0x0001ff00), uint32(0xffffffff), uint32(7), uint32(99))
	f.Add(uint32(0xffffffff), uint32(0x12345678), uint32(3), uint32(1<<30))
	f.Fuzz(func(t *testing.T, mask, old, action, id uint32) {
		m, err := NewMarks(mask)
		if err != nil {
			return
		}
		a := MarkAction(action & 7)
		v := m.Encode(old, a, id)
		if v&^mask != old&^mask {
			t.Fatalf("mask %#x: Encode changed foreign bits: old %#x new %#x", mask, old, v)
		}
		ga, est, gid := m.Decode(v)
		wantID := min(id, m.MaxID())
		switch {
		case a == MarkNone:
			// An ID travels only with an action: without one the same
			// bits are the kernel's state bits, and no ID is read.
			if ga != a || gid != 0 || est != (v&m.EstablishedBit() != 0) {
				t.Fatalf("mask %#x: Decode(Encode(none, %d)) = %v %v %d", mask, id, ga, est, gid)
			}
		case ga != a || est || gid != wantID:
			t.Fatalf("mask %#x: Decode(Encode(%v, %d)) = %v %v %d", mask, a, id, ga, est, gid)
		}
		if v&m.ActionMask() != m.Action(a) {
			t.Fatalf("mask %#x: action bits %#x, want %#x", mask, v&m.ActionMask(), m.Action(a))
		}
		if m.ActionMask()|m.IDMask() != mask || m.ActionMask()&m.IDMask() != 0 || m.StateMask()&^m.IDMask() != 0 {
			t.Fatalf("mask %#x: packet mark fields do not tile the mask", mask)
		}
		if m.OffloadBits()|m.GenMask() != mask || m.OffloadBits()&m.GenMask() != 0 {
			t.Fatalf("mask %#x: conntrack mark fields do not tile the mask", mask)
		}
		if m.OffloadRequest(id)&^mask != 0 || m.ConnGen(id)&^mask != 0 {
			t.Fatalf("mask %#x: offload marks outside the mask", mask)
		}
	})
}

func BenchmarkMarksEncodeDecode(b *testing.B) {
	m, _ := NewMarks(DefaultMarkMask)
	b.ReportAllocs()
	var sink uint32
	for i := 0; b.Loop(); i++ {
		v := m.Encode(uint32(i), MarkDropLog, uint32(i))
		a, _, id := m.Decode(v)
		sink += uint32(a) + id
	}
	_ = sink
}
