package metrics

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// DefaultProcQueuePath is where the kernel lists the bound NFQUEUE queues of
// the reader's network namespace.
const DefaultProcQueuePath = "/proc/net/netfilter/nfnetlink_queue"

// KernelQueue is one line of /proc/net/netfilter/nfnetlink_queue: the
// kernel's own counters for one bound queue.
type KernelQueue struct {
	Queue     uint16
	PortID    uint32 // netlink port of the bound reader
	Waiting   uint64 // queue_total: packets queued and not yet answered
	CopyMode  uint8
	CopyRange uint32
	// QueueDropped counts packets dropped because the queue was full
	// (fail-closed; with fail-open the kernel accepts them and counts
	// nothing).
	QueueDropped uint64
	// UserDropped counts packets dropped because they could not be
	// delivered to the reader's socket (fail-closed; likewise uncounted
	// with fail-open).
	UserDropped uint64
	// IDSequence is the id of the last packet sent to the reader: the
	// number of packets queued since the queue was bound.
	IDSequence uint64
}

// ParseKernelQueues parses the text of /proc/net/netfilter/nfnetlink_queue:
// one queue a line, "queue_number peer_portid queue_total copy_mode
// copy_range queue_dropped user_dropped id_sequence 1", space-padded.
func ParseKernelQueues(r io.Reader) ([]KernelQueue, error) {
	var out []KernelQueue
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("metrics: nfnetlink_queue line %d: %d fields, want at least 8", line, len(f))
		}
		var v [8]uint64
		bitsOf := [8]int{16, 32, 64, 8, 32, 64, 64, 64}
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, bitsOf[i])
			if err != nil {
				return nil, fmt.Errorf("metrics: nfnetlink_queue line %d field %d: %w", line, i+1, err)
			}
			v[i] = n
		}
		out = append(out, KernelQueue{
			Queue: uint16(v[0]), PortID: uint32(v[1]), Waiting: v[2], CopyMode: uint8(v[3]),
			CopyRange: uint32(v[4]), QueueDropped: v[5], UserDropped: v[6], IDSequence: v[7],
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: read nfnetlink_queue: %w", err)
	}
	return out, nil
}
