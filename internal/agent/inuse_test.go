package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestInUse(t *testing.T) {
	proc := filepath.Join(t.TempDir(), "nfnetlink_queue")
	// queue 3 held by port 4242 (the kernel's layout, space-padded).
	if err := os.WriteFile(proc, []byte("    3   4242     0 2 65531     0     0        0  1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eperm := fmt.Errorf("verdict: bind queue 3: %w", syscall.EPERM)
	err := inUse(eperm, "queue", "--queue-base", proc, []uint16{2, 3})
	if err == nil || !strings.Contains(err.Error(), "queue 3 is bound by another process (netlink port 4242") {
		t.Errorf("held queue: %v", err)
	}
	if errors.Is(err, syscall.EPERM) || strings.Contains(err.Error(), syscall.EPERM.Error()) {
		t.Errorf("%q still reads as a privilege error, and would get the CAP_NET_ADMIN hint", err)
	}
	// Not held by anyone: really a privilege problem, left as it is.
	if got := inUse(eperm, "queue", "--queue-base", proc, []uint16{0}); got != eperm {
		t.Errorf("unheld queue: %v, want the original error", got)
	}
	other := errors.New("something else")
	if got := inUse(other, "queue", "--queue-base", proc, []uint16{3}); got != other {
		t.Errorf("non-EPERM error rewritten: %v", got)
	}
	if got := inUse(eperm, "queue", "--queue-base", filepath.Join(t.TempDir(), "none"), []uint16{3}); got != eperm {
		t.Errorf("no proc file: %v", got)
	}
}
