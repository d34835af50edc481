package instance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAcquireExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "netns-1.lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := ParsePID(readFile(path)); got != os.Getpid() {
		t.Errorf("lock file names pid %d, want %d", got, os.Getpid())
	}
	_, err = Acquire(path)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second Acquire: %v, want a HeldError", err)
	}
	if held.PID != os.Getpid() || !strings.Contains(err.Error(), "pid ") || !strings.Contains(err.Error(), "--replace") {
		t.Errorf("HeldError %q (pid %d), want it to name pid %d and --replace", err, held.PID, os.Getpid())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := AcquireWait(ctx, path); !errors.As(err, &held) {
		t.Errorf("AcquireWait while held: %v, want a HeldError", err)
	}
	l.Release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("lock file left after Release: %v", err)
	}
	l2, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

// TestAcquireUnlinkedFile: a lock taken on a file that was removed and
// replaced meanwhile guards nothing; Acquire must end up holding the file
// at the path, so a third party is refused.
func TestAcquireUnlinkedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netns-3.lock")
	stale, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if samePath(stale, path) {
		t.Fatal("samePath true for an unlinked file")
	}
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if !samePath(l.f, path) {
		t.Error("Acquire holds a file that is not at the path")
	}
	var held *HeldError
	if _, err := Acquire(path); !errors.As(err, &held) {
		t.Errorf("a second Acquire got %v, want a HeldError", err)
	}
}

func TestAcquireWaitGetsReleasedLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netns-2.lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l2, err := AcquireWait(t.Context(), path)
		l2.Release()
		done <- err
	}()
	l.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPathPerNamespace(t *testing.T) {
	p, err := Path("/run/x")
	if err != nil {
		t.Skipf("no /proc/thread-self/ns/net: %v", err)
	}
	if !strings.HasPrefix(p, "/run/x/netns-") || !strings.HasSuffix(p, ".lock") {
		t.Errorf("Path = %q", p)
	}
}

func TestParsePID(t *testing.T) {
	for in, want := range map[string]int{"123\n": 123, "": 0, "x": 0, "-4": 0, " 7 ": 7} {
		if got := ParsePID([]byte(in)); got != want {
			t.Errorf("ParsePID(%q) = %d, want %d", in, got, want)
		}
	}
}

func FuzzParsePID(f *testing.F) {
	f.Add([]byte("123\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if pid := ParsePID(b); pid < 0 {
			t.Fatalf("negative pid %d", pid)
		}
	})
}
