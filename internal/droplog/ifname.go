package droplog

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/fwagent/fwagent/internal/ifname"
)

// ownNames opens an interface-name cache in the namespace nsFD (0: the
// caller's) for a Reader that was given no Config.IfName, and keeps it
// current until stop is called.
func ownNames(ctx context.Context, nsFD int, log *slog.Logger) (names *ifname.Cache, stop func(), err error) {
	closeNS := func() {}
	if nsFD == 0 {
		f, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return nil, nil, fmt.Errorf("droplog: open own network namespace: %w", err)
		}
		closeNS = func() { f.Close() }
		nsFD = int(f.Fd())
	}
	names, err = ifname.NewAt(nsFD)
	if err != nil {
		closeNS()
		return nil, nil, fmt.Errorf("droplog: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := names.Watch(ctx); err != nil {
			log.Warn("interface names may go stale", "err", err)
		}
	}()
	return names, func() { cancel(); <-done; names.Close(); closeNS() }, nil
}
