package secure

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Checker reads files only when their permissions are safe. The zero value
// is not useful; build one with New.
type Checker struct {
	uid   uint32
	allow bool
}

// New returns a Checker for an agent running as uid (normally
// os.Geteuid()). With allowInsecure, files are read whatever their
// permissions (--allow-insecure-policy-perms).
func New(uid int, allowInsecure bool) *Checker {
	return &Checker{uid: uint32(uid), allow: allowInsecure}
}

// InsecureError says why a file was refused and how to fix it.
type InsecureError struct {
	Path   string
	Reason string
	Fix    string
}

func (e *InsecureError) Error() string {
	return fmt.Sprintf("secure: refusing %s: %s (fix: %s, or run with --allow-insecure-policy-perms)", e.Path, e.Reason, e.Fix)
}

// Check opens path and checks its permissions without reading it.
func (c *Checker) Check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("secure: %w", err)
	}
	defer f.Close()
	return c.check(path, f)
}

// ReadFile reads path after checking, on the opened file, that neither group
// nor others may write it and that it belongs to root or to the agent's
// user. It has the signature of os.ReadFile, so a policy loader can read the
// policy and every set file it names through it.
func (c *Checker) ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	defer f.Close()
	if err := c.check(path, f); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("secure: read %s: %w", path, err)
	}
	return b, nil
}

func (c *Checker) check(path string, f *os.File) error {
	if c.allow {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("secure: stat %s: %w", path, err)
	}
	return c.verdict(path, fi.Mode(), ownerOf(fi))
}

// verdict is the rule itself, apart from the file system so it can be
// tested for owners a test cannot create.
func (c *Checker) verdict(path string, mode os.FileMode, owner uint32) error {
	if !mode.IsRegular() {
		return &InsecureError{Path: path, Reason: fmt.Sprintf("not a regular file (%v)", mode.Type()), Fix: "point the policy at a regular file"}
	}
	if perm := mode.Perm(); perm&0o022 != 0 {
		who := "group"
		switch {
		case perm&0o022 == 0o022:
			who = "group and others"
		case perm&0o002 != 0:
			who = "others"
		}
		return &InsecureError{
			Path:   path,
			Reason: fmt.Sprintf("mode %#o lets %s write it", perm, who),
			Fix:    "chmod go-w " + path,
		}
	}
	if owner != 0 && owner != c.uid {
		return &InsecureError{
			Path:   path,
			Reason: fmt.Sprintf("owned by uid %d, neither root nor the agent's uid %d", owner, c.uid),
			Fix:    fmt.Sprintf("chown %d %s", c.uid, path),
		}
	}
	return nil
}

// ownerOf is the file's owner uid; a FileInfo without one (not from a real
// file system) counts as owned by root.
func ownerOf(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}
