// Package examplepolicy lists the example policies shipped in
// policies/examples, for the tests that check every one of them (format,
// schema).
package examplepolicy

import (
	"path/filepath"
	"runtime"
	"testing"
)

// Paths are the example policies (policies/examples/*.yaml) and
// policies/examples/testdata/every-key.yaml, which writes every key of the
// format once. It fails t when it finds fewer than seven files.
func Paths(t testing.TB) []string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("examplepolicy: no source path")
	}
	dir := filepath.Join(filepath.Dir(self), "..", "..", "..", "policies", "examples")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(dir, "testdata", "every-key.yaml"))
	if len(files) < 7 {
		t.Fatalf("only %d examples", len(files))
	}
	return files
}
