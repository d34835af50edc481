package metrics

import (
	"io"

	"github.com/fwagent/fwagent/internal/procqueue"
)

// DefaultProcQueuePath is where the kernel lists the bound NFQUEUE queues of
// the reader's network namespace.
const DefaultProcQueuePath = procqueue.Path

// KernelQueue is one line of /proc/net/netfilter/nfnetlink_queue. It and
// ParseKernelQueues only forward to procqueue, which new code uses; they
// stay while e2e/ still reads queues through this package.
type KernelQueue = procqueue.Queue

// ParseKernelQueues is procqueue.Parse.
func ParseKernelQueues(r io.Reader) ([]KernelQueue, error) { return procqueue.Parse(r) }
