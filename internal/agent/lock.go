package agent

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/fwagent/fwagent/internal/instance"
)

// replaceTimeout bounds how long a --replace agent waits for the running
// one to give way; it covers that agent's orderly stop (queues drained,
// readers closed).
const replaceTimeout = 15 * time.Second

// takeLock makes this the namespace's only agent. A running one makes the
// start fail at once, naming its pid, unless --replace: then it is told to
// give way (it exits non-zero and leaves its table, which Install replaces
// in one transaction) and the lock is taken once it has.
func (a *Agent) takeLock(ctx context.Context) (func(), error) {
	dir := a.cfg.LockDir
	if dir == "" {
		dir = instance.DefaultDir
	}
	path, err := instance.Path(dir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	l, err := instance.Acquire(path)
	var held *instance.HeldError
	if errors.As(err, &held) && a.cfg.Replace {
		if held.PID == 0 {
			return nil, fmt.Errorf("agent: --replace: the running agent did not write its pid into %s", path)
		}
		a.log.Warn("replacing the running agent", "pid", held.PID)
		if err := syscall.Kill(held.PID, instance.ReplaceSignal); err != nil {
			return nil, fmt.Errorf("agent: --replace: signal pid %d: %w", held.PID, err)
		}
		wctx, cancel := context.WithTimeout(ctx, replaceTimeout)
		defer cancel()
		l, err = instance.AcquireWait(wctx, path)
		if err != nil && ctx.Err() != nil {
			return nil, errStopped
		}
		if err != nil {
			return nil, fmt.Errorf("agent: --replace: pid %d did not give way within %v: %w", held.PID, replaceTimeout, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.log.Debug("namespace lock taken", "path", l.Path())
	return l.Release, nil
}
