package testnet

import (
	"os"
	"os/exec"
	"testing"
)

// skipOrFail skips the test, unless the environment says it runs in CI, where
// a skipped kernel test would hide a missing capability behind a green run.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testnet: CI=true forbids skipping: "+format, args...)
	}
	t.Skipf("testnet: "+format, args...)
}

// RequireRoot skips the test when it cannot create network namespaces (not
// root, or no netns support in the kernel), and fails it instead when the
// environment variable CI is "true".
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to create network namespaces (euid %d)", os.Geteuid())
		return
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		skipOrFail(t, "kernel without network namespaces: %v", err)
		return
	}
	RequireCommands(t, "ip")
}

// RequireCommands skips the test when one of the named programs is not on
// PATH, and fails it instead when CI is "true".
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			skipOrFail(t, "program %q not found: %v", name, err)
			return
		}
	}
}

// TcpdumpRead is what `tcpdump -nn -r path` prints of the capture file at
// path: the file as a pcap reader other than ours reads it. The caller has
// required tcpdump (RequireCommands); a file it cannot read fails the test.
func TcpdumpRead(t testing.TB, path string) []byte {
	t.Helper()
	out, err := exec.Command("tcpdump", "-nn", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	return out
}
