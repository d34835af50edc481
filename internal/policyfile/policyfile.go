// Package policyfile is the one way a policy file goes live: `run` at
// start, every reload and `check` read it through Load and Gate, so they
// refuse the same policies with the same messages.
package policyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/fwagent/fwagent/internal/secure"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/policies/policytest"
)

// Error is any reason Load or Gate refuses a policy. Its text is the same
// wherever it is printed (check, run, the reload log), FILE:LINE:COL first
// where there is a position, so callers print it as it is.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Load reads the policy at path and the set files it names, refusing files
// that others could have written unless allowInsecure
// (--allow-insecure-policy-perms), then validates and compiles it. Policy
// errors carry FILE:LINE:COL.
func Load(path string, allowInsecure bool) (*policies.Program, error) {
	p, err := load(path, allowInsecure)
	if err != nil {
		return nil, &Error{err}
	}
	return p, nil
}

func load(path string, allowInsecure bool) (*policies.Program, error) {
	c := secure.New(os.Geteuid(), allowInsecure)
	data, err := c.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			// "policy: open /etc/fwagent/policy.yaml: no such file or directory"
			return nil, fmt.Errorf("policy: %w", pe)
		}
		return nil, fmt.Errorf("policy: %w", err)
	}
	pol, err := policyload.Load(path, data, c.ReadFile)
	if err != nil {
		return nil, err
	}
	return policies.Compile(pol)
}

// TestsFailedError is a policy whose own tests: section fails.
type TestsFailedError struct {
	Path    string
	Failed  []policytest.Result
	Total   int
	Refused string // what refuses it, e.g. "refusing to run it"
}

func (e *TestsFailedError) Error() string {
	var b strings.Builder
	for _, r := range e.Failed {
		fmt.Fprintf(&b, "%s:%d:%d: test failed: %s\n", r.File, r.Line, r.Col, r.Msg)
	}
	fmt.Fprintf(&b, "%s: %d of %d tests failed", e.Path, len(e.Failed), e.Total)
	if e.Refused != "" {
		b.WriteString("; " + e.Refused)
	}
	return b.String()
}

// Gate runs the policy's tests and returns a *TestsFailedError if any
// fails; refused says what the caller does with such a policy. It returns
// how many tests ran.
func Gate(path string, p *policies.Program, refused string) (int, error) {
	results := policytest.Run(p)
	var failed []policytest.Result
	for _, r := range results {
		if !r.OK {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		return len(results), &Error{&TestsFailedError{Path: path, Failed: failed, Total: len(results), Refused: refused}}
	}
	return len(results), nil
}
