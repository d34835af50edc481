package policyload

import "fmt"

// suggest returns the candidate closest to s by edit distance, if it is
// close enough to be a plausible typo.
func suggest(s string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(s, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 {
		return "", false
	}
	limit := 2
	if len(s) <= 3 {
		limit = 1
	}
	if bestD > limit && !(len(s) > 4 && bestD <= len(s)/3) {
		return "", false
	}
	return best, true
}

// didYouMean formats a suggestion suffix for an error message.
func didYouMean(s string, candidates []string, prefix string) string {
	if c, ok := suggest(s, candidates); ok {
		return fmt.Sprintf(", did you mean %s%s?", prefix, c)
	}
	return ""
}

// editDistance is the optimal-string-alignment distance between a and b:
// Levenshtein plus transposition of adjacent characters, the commonest typo.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
