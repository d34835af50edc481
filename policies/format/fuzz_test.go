package format

import (
	"os"
	"testing"
)

// FuzzFormat: Format never panics, and what it returns formats to itself.
func FuzzFormat(f *testing.F) {
	for _, p := range []string{"../examples/host-baseline.yaml", "../examples/router.yaml", "../examples/testdata/every-key.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("version: 1\nrules:\n  - name: a # x\n    match: {src: !10.0.0.0/8}\n    action: drop\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		out, err := Format("p.yaml", src)
		if err != nil {
			return
		}
		again, err := Format("p.yaml", out)
		if err != nil {
			t.Fatalf("formatted output does not format: %v\n--- in\n%q\n--- out\n%s", err, src, out)
		}
		if string(again) != string(out) {
			t.Fatalf("not idempotent\n--- in\n%q\n--- once\n%s\n--- twice\n%s", src, out, again)
		}
	})
}
