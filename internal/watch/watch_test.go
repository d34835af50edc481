package watch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
)

const debounce = 100 * time.Millisecond

func policyText(port int, setFile string) string {
	return fmt.Sprintf(`version: 1
default: {input: drop}
sets:
  admins: {file: %s}
rules:
  - name: web
    hook: input
    match: {proto: tcp, dport: %d, src: $admins}
    action: accept
`, setFile, port)
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// renameOver saves like an editor: a new file renamed over the old one.
func renameOver(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".swp"
	write(t, tmp, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// configMap lays out dir as kubelet does for a ConfigMap volume:
// policy.yaml -> ..data/policy.yaml, ..data -> ..<version>/.
func configMap(t *testing.T, dir, version string, files map[string]string) {
	t.Helper()
	vdir := filepath.Join(dir, ".."+version)
	if err := os.Mkdir(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		write(t, filepath.Join(vdir, name), text)
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(".."+version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	debounce time.Duration
	reloads  atomic.Int32
	got      chan struct{}
	w        *Watcher
}

func start(t *testing.T, policy string, debounce time.Duration) *harness {
	t.Helper()
	h := &harness{got: make(chan struct{}, 100), debounce: debounce}
	w, err := New(Config{Policy: policy, Debounce: debounce, Reload: func() error {
		h.reloads.Add(1)
		h.got <- struct{}{}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return h
}

// waitReload waits for one more reload.
func (h *harness) waitReload(t *testing.T) {
	t.Helper()
	select {
	case <-h.got:
	case <-time.After(10 * time.Second):
		t.Fatalf("no reload after a change (%d so far)", h.reloads.Load())
	}
}

// quiet lets several debounce intervals pass, then says how many reloads
// happened in all.
func (h *harness) quiet() int {
	time.Sleep(5 * h.debounce)
	return int(h.reloads.Load())
}

func TestWatch(t *testing.T) {
	tests := []struct {
		name string
		// setup lays out dir and returns the policy path.
		setup func(t *testing.T, dir string) string
		// change edits the files; wantReload says whether that must reload.
		change     func(t *testing.T, dir string)
		wantReload bool
		// debounce, if set, replaces the default of these tests.
		debounce time.Duration
	}{
		{
			name:  "write in place",
			setup: plain,
			change: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "policy.yaml"), policyText(81, "admins.txt"))
			},
			wantReload: true,
		},
		{
			name:  "editor renames a new file over the policy",
			setup: plain,
			change: func(t *testing.T, dir string) {
				renameOver(t, filepath.Join(dir, "policy.yaml"), policyText(82, "admins.txt"))
			},
			wantReload: true,
		},
		{
			name:       "set file changes",
			setup:      plain,
			change:     func(t *testing.T, dir string) { renameOver(t, filepath.Join(dir, "admins.txt"), "10.0.0.0/8\n") },
			wantReload: true,
		},
		{
			name:  "a burst of saves",
			setup: plain,
			change: func(t *testing.T, dir string) {
				for i := range 5 {
					renameOver(t, filepath.Join(dir, "policy.yaml"), policyText(90+i, "admins.txt"))
					write(t, filepath.Join(dir, "policy.yaml"), policyText(100+i, "admins.txt"))
				}
			},
			wantReload: true,
			// Long enough that a stall of the test on a loaded machine
			// does not split the burst.
			debounce: time.Second,
		},
		{
			name: "ConfigMap symlink swap",
			setup: func(t *testing.T, dir string) string {
				configMap(t, dir, "2026_11_27_10_00_00.1", map[string]string{"policy.yaml": policyText(80, "admins.txt"), "admins.txt": "192.0.2.0/24\n"})
				return filepath.Join(dir, "policy.yaml")
			},
			change: func(t *testing.T, dir string) {
				configMap(t, dir, "2026_11_27_10_05_00.2", map[string]string{"policy.yaml": policyText(80, "admins.txt"), "admins.txt": "198.51.100.0/24\n"})
			},
			wantReload: true,
		},
		{
			name:       "unrelated file in the directory",
			setup:      plain,
			change:     func(t *testing.T, dir string) { write(t, filepath.Join(dir, "notes.txt"), "hello") },
			wantReload: false,
		},
		{
			name:  "saved without changes",
			setup: plain,
			change: func(t *testing.T, dir string) {
				renameOver(t, filepath.Join(dir, "policy.yaml"), policyText(80, "admins.txt"))
			},
			wantReload: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			d := debounce
			if tt.debounce > 0 {
				d = tt.debounce
			}
			h := start(t, tt.setup(t, dir), d)
			tt.change(t, dir)
			want := 0
			if tt.wantReload {
				h.waitReload(t)
				want = 1
			}
			if n := h.quiet(); n != want {
				t.Fatalf("%d reloads, want %d", n, want)
			}
		})
	}
}

func plain(t *testing.T, dir string) string {
	write(t, filepath.Join(dir, "admins.txt"), "192.0.2.0/24\n")
	p := filepath.Join(dir, "policy.yaml")
	write(t, p, policyText(80, "admins.txt"))
	return p
}

// A set file the policy starts naming on a reload, in a directory not
// watched before, is watched from then on; a broken policy still has its
// files watched, so fixing it reloads.
func TestWatchFollowsSetFiles(t *testing.T) {
	dir := t.TempDir()
	p := plain(t, dir)
	h := start(t, p, debounce)

	sub := filepath.Join(dir, "sets")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(sub, "more.txt"), "203.0.113.0/24\n")
	write(t, p, policyText(80, "sets/more.txt"))
	h.waitReload(t)
	// The watcher rescans right after the reload returns.
	if !eventually.True(10*time.Second, 10*time.Millisecond, func() bool { return slices.Contains(h.w.Files(), filepath.Join(sub, "more.txt")) }) {
		t.Fatalf("watching %v, want sets/more.txt among them", h.w.Files())
	}
	write(t, filepath.Join(sub, "more.txt"), "203.0.113.0/25\n")
	h.waitReload(t)

	write(t, p, "version: 1\nrules: [\n") // broken
	h.waitReload(t)
	write(t, p, policyText(80, "admins.txt")) // fixed
	h.waitReload(t)
	if n := h.quiet(); n != 4 {
		t.Fatalf("%d reloads, want 4", n)
	}
}

func TestPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	p := plain(t, dir)
	want := []string{p, filepath.Join(dir, "admins.txt")}
	if got := PolicyFiles(p); !slices.Equal(got, want) {
		t.Fatalf("PolicyFiles = %v, want %v", got, want)
	}
	missing := filepath.Join(dir, "nope.yaml")
	if got := PolicyFiles(missing); !slices.Equal(got, []string{missing}) {
		t.Fatalf("PolicyFiles of a missing policy = %v, want just the policy", got)
	}
}
