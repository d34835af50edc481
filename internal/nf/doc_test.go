package nf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// opsDoc is the operator documentation whose mark tables must describe
// this package's layout.
const opsDoc = "../../docs/operations.md"

// docTable returns the rows (cells, trimmed) of the markdown table that
// follows the line "<!-- marker -->" in doc, header and separator dropped.
func docTable(t *testing.T, doc, marker string) [][]string {
	t.Helper()
	_, after, ok := strings.Cut(doc, "<!-- "+marker+" -->\n")
	if !ok {
		t.Fatalf("%s: no <!-- %s --> table", opsDoc, marker)
	}
	var rows [][]string
	for i, line := range strings.Split(after, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if i < 2 {
			continue // header and |---|
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: <!-- %s --> table is empty", opsDoc, marker)
	}
	return rows
}

// bitRange turns "3" or "3-15" into the mask of those bits shifted by
// shift.
func bitRange(t *testing.T, s string, shift uint) uint32 {
	t.Helper()
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	b := a
	if err == nil && isRange {
		b, err = strconv.Atoi(hi)
	}
	if err != nil || a > b || b > 31 {
		t.Fatalf("%s: bad bit range %q", opsDoc, s)
	}
	var m uint32
	for i := a; i <= b; i++ {
		m |= 1 << (uint(i) + shift)
	}
	return m
}

// TestOperationsMarkTable keeps docs/operations.md's mark tables equal to
// the layout Marks implements (#15: the table had drifted from it): every
// row's bits, in the field and under the default mask, are the bits of the
// field it names, every field has its row, and the width table's counts are
// what NewMarks gives.
func TestOperationsMarkTable(t *testing.T) {
	b, err := os.ReadFile(opsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	def, err := NewMarks(DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	check := func(table string, want map[string]func(Marks) uint32, name func(string) string) {
		seen := map[string]bool{}
		for _, row := range docTable(t, doc, table) {
			if len(row) != 3 {
				t.Fatalf("%s %s: row %q has %d cells", opsDoc, table, row, len(row))
			}
			key := name(row[2])
			f, ok := want[key]
			if !ok {
				t.Errorf("%s %s: row %q names no field of the layout", opsDoc, table, row)
				continue
			}
			seen[key] = true
			// The field column is the default mask's bits shifted down.
			if got, w := bitRange(t, row[0], 0), f(def)>>16; got != w {
				t.Errorf("%s %s: %q: field bits %#x, the layout has %#x", opsDoc, table, row[2], got, w)
			}
			if got, w := bitRange(t, row[1], 0), f(def); got != w {
				t.Errorf("%s %s: %q: default-mask bits %#x, the layout has %#x", opsDoc, table, row[2], got, w)
			}
		}
		for k := range want {
			if !seen[k] {
				t.Errorf("%s %s: no row for %s", opsDoc, table, k)
			}
		}
	}
	check("marks:packet", map[string]func(Marks) uint32{
		"action":      Marks.ActionMask,
		"established": Marks.EstablishedBit,
		"related":     Marks.RelatedBit,
		"invalid":     Marks.InvalidBit,
		"ID":          Marks.IDMask,
	}, func(meaning string) string {
		k, _, _ := strings.Cut(meaning, ":")
		k, _, _ = strings.Cut(k, ",")
		return k
	})
	conn := map[string]func(Marks) uint32{"policy generation": Marks.GenMask}
	for h := HookInput; h < NumHooks; h++ {
		for _, reply := range []bool{false, true} {
			dir := "original"
			if reply {
				dir = "reply"
			}
			conn[fmt.Sprintf("offloaded at %s, %s direction", h, dir)] = func(m Marks) uint32 { return m.OffloadBit(h, reply) }
		}
	}
	check("marks:conntrack", conn, func(meaning string) string {
		if strings.HasPrefix(meaning, "policy generation") {
			return "policy generation"
		}
		return meaning
	})

	// The action codes the packet table lists.
	names := map[string]MarkAction{"log+drop": MarkDropLog, "reject": MarkReject, "log+reject": MarkRejectLog,
		"log+accept": MarkAcceptLog, "would_drop": MarkWouldDrop, "would_reject": MarkWouldReject, "offload": MarkOffload}
	for _, row := range docTable(t, doc, "marks:packet") {
		list, ok := strings.CutPrefix(row[2], "action: ")
		if !ok {
			continue
		}
		n := 0
		for _, item := range strings.Split(list, ", ") {
			code, nm, _ := strings.Cut(item, " ")
			v, err := strconv.Atoi(code)
			if a, ok := names[nm]; err != nil || !ok || uint32(a) != uint32(v) {
				t.Errorf("%s: action %q is not code %d of MarkAction", opsDoc, item, v)
			}
			n++
		}
		if n != len(names) {
			t.Errorf("%s: %d action codes listed, the layout has %d", opsDoc, n, len(names))
		}
	}

	// Rule IDs (the largest ID names no rule) and generations per width.
	for _, row := range docTable(t, doc, "marks:widths") {
		w, err1 := strconv.Atoi(row[0])
		ids, err2 := strconv.Atoi(row[1])
		gens, err3 := strconv.Atoi(row[2])
		if err1 != nil || err2 != nil || err3 != nil || w < 1 || w > 32 {
			t.Fatalf("%s: bad width row %q", opsDoc, row)
		}
		m, err := NewMarks(uint32(1<<w-1) << (32 - w))
		if err != nil {
			t.Errorf("%s: %d bits: %v", opsDoc, w, err)
			continue
		}
		if int(m.MaxID())-1 != ids || int(m.MaxGen()) != gens {
			t.Errorf("%s: %d bits: %d IDs and %d generations documented, the layout gives %d and %d", opsDoc, w, ids, gens, m.MaxID()-1, m.MaxGen())
		}
	}
	if !strings.Contains(doc, fmt.Sprintf("at least %d bits", MinMarkBits)) {
		t.Errorf("%s does not say the mask needs at least %d bits", opsDoc, MinMarkBits)
	}
}
