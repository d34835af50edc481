package rules

import "fmt"

func hex32(v uint32) string { return fmt.Sprintf("0x%08x", v) }

// indexSegments is the most index segments (index.go) in one chain of l: a
// stateless table has an index per family and protocol chain, so segments
// are more than one pick in the same chain.
func indexSegments(l chainLayout) int {
	chains := [][]rule{l.main}
	for _, b := range l.blocks {
		chains = append(chains, b.rules)
	}
	most := 0
	for _, rs := range chains {
		picks := 0
		for _, r := range rs {
			if r.name == RuleIndexPick {
				picks++
			}
		}
		most = max(most, picks)
	}
	return most
}
