package metrics

import (
	"sync"
	"time"
)

// Reloads records the outcome of policy reloads, from SIGHUP and from the
// file watch alike. It is safe for concurrent use.
type Reloads struct {
	mu   sync.Mutex
	last ReloadStats
}

// ReloadStats is a snapshot of Reloads.
type ReloadStats struct {
	OK, Failed uint64
	// Last is when the last reload was attempted (zero: never).
	Last time.Time
	// LastErr is the last attempt's error, nil if it succeeded.
	LastErr error
}

// Record counts one reload attempt that finished at now with err.
func (r *Reloads) Record(now time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.last.Failed++
	} else {
		r.last.OK++
	}
	r.last.Last, r.last.LastErr = now, err
}

// Stats is a snapshot.
func (r *Reloads) Stats() ReloadStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}
