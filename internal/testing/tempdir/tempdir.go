// Package tempdir makes temporary directories for tests where t.TempDir's
// will not do.
package tempdir

import (
	"os"
	"testing"
)

// Short returns a new directory directly under os.TempDir, its name
// starting with prefix, removed when the test ends. Its path stays short
// (t.TempDir's carries the test's name, and a unix socket's path must fit
// in 108 bytes), and it is the test's own to chmod (t.TempDir's parent is
// private to the user).
func Short(tb testing.TB, prefix string) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
