package rules

import (
	"slices"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/testing/policygen"
)

// TestLayoutTreeKeepsOrder lays out a generated 1,000-rule policy and walks
// the trees as the kernel would for a packet that passes every guard: the
// rules it reaches in a protocol's tree, in order, are the hook's rules
// that protocol can match, in policy order, each once, then the default;
// in the main chain those that name no protocol; the main chain is short (what a packet that matches nothing pays),
// and the nesting stays within nft's jump stack.
func TestLayoutTreeKeepsOrder(t *testing.T) {
	cfg := testConfig(t)
	cfg.Hooks = []nf.Hook{nf.HookInput}
	// Stateful: a stateless plan puts its own guards in front (stateless.go).
	plan := compileText(t, cfg, policygen.Generate(policygen.Options{Rules: 1000, Stateful: true}))
	if plan.Stateless() {
		t.Fatal("the generated policy should need conntrack")
	}
	plan.indexMin = -1 // the guarded blocks, not the index
	for _, size := range []int{0, 1, 3, 16, 128} {
		plan.blockSize = size
		l := plan.layout(nf.HookInput, queueStmt{}, "x")
		chains := map[string][]rule{}
		for _, b := range l.blocks {
			if _, dup := chains[b.name]; dup {
				t.Fatalf("size %d: chain %s twice", size, b.name)
			}
			chains[b.name] = b.rules
		}
		seen := map[string]bool{}
		maxDepth := 0
		var walk func(rs []rule, depth int) []string
		walk = func(rs []rule, depth int) []string {
			maxDepth = max(maxDepth, depth)
			var got []string
			for _, r := range rs {
				if r.name != RuleGuard && r.name != RuleProto {
					got = append(got, r.name)
					continue
				}
				j, ok := r.stmts[len(r.stmts)-1].(jumpStmt)
				if !ok {
					t.Fatalf("size %d: guard %s does not end in a jump", size, r.text())
				}
				if seen[string(j)] {
					continue // a second guard of an entry: nothing new behind it
				}
				seen[string(j)] = true
				sub, ok := chains[string(j)]
				if !ok {
					t.Fatalf("size %d: guard jumps to unknown chain %s", size, j)
				}
				if r.name == RuleProto {
					// A tree of its own: the rules a packet of this
					// protocol can match, then the default.
					pr := uint8(r.stmts[0].(l4proto))
					var want []string
					for _, pr2 := range plan.chains[nf.HookInput] {
						if ps := ruleProtos(pr2.match); ps == nil || slices.Contains(ps, pr) || pr2.comment == commentDefault {
							want = append(want, pr2.comment)
						}
					}
					if got := walk(sub, depth+1); !slices.Equal(got, want) {
						t.Fatalf("size %d: protocol %d's tree reaches %d rules, want the %d in policy order", size, pr, len(got), len(want))
					}
					continue
				}
				got = append(got, walk(sub, depth+1)...)
			}
			return got
		}
		got := walk(l.main, 0)
		var want []string
		for _, r := range plan.chains[nf.HookInput] {
			if ruleProtos(r.match) == nil {
				want = append(want, r.comment)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("size %d: walk reaches %d rules, want the %d that name no protocol in policy order", size, len(got), len(want))
		}
		if len(seen) != len(chains) {
			t.Errorf("size %d: %d of %d block chains reachable", size, len(seen), len(chains))
		}
		// Base chain and policy chain take two of nft's 16 jump levels.
		if maxDepth > 12 {
			t.Errorf("size %d: nesting %d deep", size, maxDepth)
		}
		if size != 1 && size != 3 && maxDepth < 2 {
			t.Errorf("size %d: nesting %d deep, want blocks grouped under a second level", size, maxDepth)
		}
		if size == 0 && len(l.main) > 3*defaultFanout+2 {
			t.Errorf("default size: main chain has %d rules", len(l.main))
		}
	}
}
