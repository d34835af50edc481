package policies

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a problem in a policy or set file, at the node at fault.
type Error struct {
	File string
	Line int
	Col  int
	Msg  string
}

// Error formats the problem as FILE:LINE:COL: message, the form editors and
// CI annotations understand.
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// MaxErrors caps the errors Load reports for one file: past it, later
// errors are more likely consequences of earlier ones than news.
const MaxErrors = 20

// ErrorList is every independent error Load found in a file, in file order;
// Load returns it when there is more than one (a lone error is an *Error).
// errors.As finds the first *Error through it.
type ErrorList struct {
	Errs []*Error
	// More counts the errors found past MaxErrors and not listed.
	More int
}

// Error is one FILE:LINE:COL: message line per error.
func (l *ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l.Errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	if l.More > 0 {
		fmt.Fprintf(&b, "\n%s: %d more errors not shown", l.Errs[0].File, l.More)
	}
	return b.String()
}

// Unwrap gives the listed errors to errors.Is and errors.As.
func (l *ErrorList) Unwrap() []error {
	out := make([]error, len(l.Errs))
	for i, e := range l.Errs {
		out[i] = e
	}
	return out
}

// Errors returns the policy errors err carries: the list of an *ErrorList,
// the one *Error, or nil for any other error.
func Errors(err error) []*Error {
	var l *ErrorList
	if errors.As(err, &l) {
		return l.Errs
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return nil
}

// pos is a place in a policy or set file.
type pos struct {
	File string
	Line int
	Col  int
}

func (p pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

func (p pos) errorf(format string, args ...any) *Error {
	line, col := p.Line, p.Col
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	return &Error{File: p.File, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

func nodePos(file string, n *yaml.Node) pos {
	if n == nil {
		return pos{File: file, Line: 1, Col: 1}
	}
	return pos{File: file, Line: n.Line, Col: n.Column}
}

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
