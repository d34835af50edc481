package policies

import (
	"errors"
	"fmt"
	"strings"
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

// MaxErrors caps the errors the loader (policies/policyload) reports for
// one file: past it, later errors are more likely consequences of earlier
// ones than news.
const MaxErrors = 20

// ErrorList is every independent error the loader found in a file, in file
// order; it returns one when there is more than one (a lone error is an
// *Error). errors.As finds the first *Error through it.
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

// Position is a place in a policy or set file.
type Position struct {
	File string
	Line int
	Col  int
}

// String is FILE:LINE:COL.
func (p Position) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Errorf is an *Error at p (line and column at least 1).
func (p Position) Errorf(format string, args ...any) *Error {
	line, col := p.Line, p.Col
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	return &Error{File: p.File, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}
