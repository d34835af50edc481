package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDir holds the lock files (and the agent's control socket).
const DefaultDir = "/run/fwagent"

// HeldError says another agent holds the namespace's lock.
type HeldError struct {
	Path string
	// PID is the holder's pid as it wrote it, 0 if it could not be read.
	PID int
}

func (e *HeldError) Error() string {
	who := "another fwagent"
	if e.PID > 0 {
		who = fmt.Sprintf("another fwagent (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s already runs in this network namespace (lock %s): stop it first, or start this one with --replace to take over", who, e.Path)
}

// Lock is a held namespace lock; it lasts until Release or the process's
// death.
type Lock struct {
	f    *os.File
	path string
}

// Path is the lock file for the calling thread's network namespace in dir:
// dir/netns-<inode>.lock. Namespaces are told apart by the inode of
// /proc/thread-self/ns/net, which is what `ip netns identify` and lsns use.
func Path(dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("instance: identify network namespace: %w", err)
	}
	return filepath.Join(dir, fmt.Sprintf("netns-%d.lock", st.Ino)), nil
}

// Acquire takes the lock at path without waiting. If another process holds
// it, the error is a *HeldError naming that process.
func Acquire(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("instance: lock directory: %w", err)
	}
	// Release removes the file, so the file locked may have been unlinked
	// between open and flock; a lock on it would guard nothing. Retry on a
	// fresh file then (a few times: each retry means a holder just left).
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("instance: open lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, &HeldError{Path: path, PID: holder(path)}
			}
			return nil, fmt.Errorf("instance: lock %s: %w", path, err)
		}
		if !samePath(f, path) {
			f.Close()
			continue
		}
		l := &Lock{f: f, path: path}
		if err := l.writePID(); err != nil {
			l.Release()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("instance: lock %s: the file kept being replaced", path)
}

// samePath reports whether f is still the file at path.
func samePath(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// AcquireWait retries Acquire until it succeeds or ctx ends; it returns the
// last *HeldError when ctx ends first.
func AcquireWait(ctx context.Context, path string) (*Lock, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		l, err := Acquire(path)
		var held *HeldError
		if !errors.As(err, &held) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-tick.C:
		}
	}
}

func (l *Lock) writePID() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("instance: write lock: %w", err)
	}
	if _, err := l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return fmt.Errorf("instance: write lock: %w", err)
	}
	return nil
}

// Release removes the lock file and drops the lock. Removing it first,
// while still locked, is safe because Acquire checks that the file it
// locked is still the one at the path.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close() // closing the only descriptor drops the flock
	l.f = nil
}

// Path is the lock file.
func (l *Lock) Path() string { return l.path }

// holder reads the pid the holder wrote. The holder writes it right after
// locking, so an empty file is retried briefly before giving up.
func holder(path string) int {
	for range 10 {
		if pid := ParsePID(readFile(path)); pid > 0 {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// ParsePID parses a lock file's contents: a decimal pid and a newline; 0
// for anything else.
func ParsePID(b []byte) int {
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// ReplaceSignal is what a new agent started with --replace sends the
// holder: the holder then stops without removing its table (the new agent
// replaces it in one transaction) and exits non-zero, so a service manager
// notices it was pushed out.
const ReplaceSignal = syscall.SIGUSR2
