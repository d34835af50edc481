package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cgroup is a cgroup v2 a test made under the host's cgroup2 mount.
type Cgroup struct {
	// Mount is the cgroup2 mount point; Path the cgroup's path below it
	// (e.g. "fwagent-test-1a2b3c4d").
	Mount, Path string
}

// Dir is the cgroup's directory.
func (c Cgroup) Dir() string { return filepath.Join(c.Mount, c.Path) }

// NewCgroup makes <cgroup2 mount>/fwagent-test-<random>[/sub...] and removes
// it when the test ends, failed or not: processes still in it are moved to
// the mount's root first. It skips (fails under CI=true) without root or a
// cgroup2 mount.
func NewCgroup(t testing.TB, sub ...string) Cgroup {
	t.Helper()
	RequireRoot(t)
	mount, err := cgroup2Mount()
	if err != nil {
		skipOrFail(t, "%v", err)
		return Cgroup{}
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	top := "fwagent-test-" + hex.EncodeToString(b[:])
	c := Cgroup{Mount: mount, Path: filepath.Join(append([]string{top}, sub...)...)}
	// Registered before anything exists, so a half-made tree goes too.
	t.Cleanup(func() {
		if err := removeCgroupTree(mount, filepath.Join(mount, top)); err != nil {
			t.Errorf("testnet: remove cgroup %s: %v", top, err)
		}
	})
	if err := os.MkdirAll(c.Dir(), 0o755); err != nil {
		t.Fatalf("testnet: make cgroup: %v", err)
	}
	return c
}

// cgroup2Mount reads /proc/self/mounts for the cgroup2 mount point: on a
// hybrid host it is not /sys/fs/cgroup.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == "cgroup2" {
			return f[1], nil
		}
	}
	return "", errors.New("no cgroup2 file system is mounted")
}

// removeCgroupTree moves every process of the tree at dir to the root
// cgroup and removes the tree's directories, deepest first. A cgroup whose
// last process just exited can refuse rmdir (EBUSY) for a moment, so it
// retries for a few seconds.
func removeCgroupTree(mount, dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var last error
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		for try := 0; ; try++ {
			if procs, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
				for _, pid := range strings.Fields(string(procs)) {
					_ = os.WriteFile(filepath.Join(mount, "cgroup.procs"), []byte(pid), 0)
				}
			}
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if try == 50 {
				last = fmt.Errorf("rmdir %s: %w", d, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return last
}

// IntoCgroup makes cmd start as a process of the cgroup at dir
// (CLONE_INTO_CGROUP), so what it opens belongs to that cgroup from its
// first instruction, with no moving it after the start. Call the returned
// func once cmd has started: it closes the directory.
func IntoCgroup(t testing.TB, cmd *exec.Cmd, dir string) (closeDir func()) {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatalf("testnet: open cgroup %s: %v", dir, err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	return func() { syscall.Close(fd) }
}
