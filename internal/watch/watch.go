package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/fwagent/fwagent/policies/policyload"
)

// DefaultDebounce is how long the directories must stay quiet before the
// files are read again: long enough for an editor's save or a ConfigMap
// swap to finish.
const DefaultDebounce = 500 * time.Millisecond

// Config configures a Watcher.
type Config struct {
	// Policy is the policy file; the set files it names are watched too.
	Policy string
	// Reload loads and applies the policy (agent.Agent.Reload); its error
	// is the caller's to log and count.
	Reload func() error
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
	Logger   *slog.Logger
}

// Watcher watches a policy's files. Run it once.
type Watcher struct {
	cfg  Config
	log  *slog.Logger
	fs   *fsnotify.Watcher
	dirs []string
	sum  [sha256.Size]byte

	mu    sync.Mutex // guards files for Files; Run alone writes it
	files []string
}

// New starts watching the directories of the policy and its set files.
func New(cfg Config) (*Watcher, error) {
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, fs: fs}
	files := PolicyFiles(cfg.Policy)
	w.sum = digest(files)
	if err := w.watch(files); err != nil {
		fs.Close()
		return nil, err
	}
	return w, nil
}

// Files are the files watched now: the policy, then its set files.
func (w *Watcher) Files() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.files)
}

// Run waits for changes and reloads until ctx is cancelled; it closes the
// watcher on return.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fs.Close()
	timer := time.NewTimer(w.cfg.Debounce)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fs.Events:
			if !ok {
				return errors.New("watch: event channel closed")
			}
			w.log.Debug("policy directory event", "event", ev.String())
			timer.Reset(w.cfg.Debounce)
		case err, ok := <-w.fs.Errors:
			if !ok {
				return errors.New("watch: error channel closed")
			}
			// An overflow loses events, not the watch: check the files.
			w.log.Warn("policy watch", "err", err)
			timer.Reset(w.cfg.Debounce)
		case <-timer.C:
			w.settle()
		}
	}
}

// settle reloads if the files changed since the last look. The list of
// files and their digest are taken before Reload reads them, so a change
// that lands while the reload runs still differs from what was recorded and
// reloads again.
func (w *Watcher) settle() {
	files := PolicyFiles(w.cfg.Policy)
	sum := digest(files)
	if sum == w.sum {
		return
	}
	w.sum = sum
	if err := w.watch(files); err != nil {
		w.log.Warn("policy watch", "err", err)
	}
	w.log.Info("policy files changed; reloading", "files", files)
	// The error is logged and counted by Reload's owner.
	_ = w.cfg.Reload()
}

// watch watches the directories of files (a reload may name other set
// files than before) and no others.
func (w *Watcher) watch(files []string) error {
	var dirs []string
	for _, f := range files {
		dirs = append(dirs, filepath.Dir(f))
		// A symlink to another directory (a mounted volume, a checkout) is
		// edited there.
		if real, err := filepath.EvalSymlinks(f); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
	}
	slices.Sort(dirs)
	dirs = slices.Compact(dirs)
	var errs []error
	for _, d := range dirs {
		if slices.Contains(w.dirs, d) {
			continue
		}
		if err := w.fs.Add(d); err != nil {
			errs = append(errs, fmt.Errorf("watch: %s: %w", d, err))
		}
	}
	for _, d := range w.dirs {
		if !slices.Contains(dirs, d) {
			_ = w.fs.Remove(d) // gone already, or unwatched: nothing to undo
		}
	}
	w.dirs = dirs
	w.mu.Lock()
	w.files = files
	w.mu.Unlock()
	return errors.Join(errs...)
}

// PolicyFiles is the policy file and the set files it names, as the loader
// reads them (a file it could not read is listed too: it may appear later).
// The policy need not be valid.
func PolicyFiles(path string) []string {
	files := []string{path}
	data, err := os.ReadFile(path)
	if err != nil {
		return files
	}
	_, _ = policyload.Load(path, data, func(name string) ([]byte, error) {
		if !slices.Contains(files, name) {
			files = append(files, name)
		}
		return os.ReadFile(name)
	})
	return files
}

// digest is a hash of the files' names and contents; a missing file hashes
// differently from an empty one.
func digest(files []string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		b, err := os.ReadFile(f)
		if err != nil {
			h.Write([]byte{0})
			continue
		}
		fmt.Fprintf(h, "\x01%d\x00", len(b))
		h.Write(b)
	}
	var s [sha256.Size]byte
	h.Sum(s[:0])
	return s
}
