// Package procqueue reads /proc/net/netfilter/nfnetlink_queue, the kernel's
// list of the bound NFQUEUE queues of a network namespace and their
// counters: the one parser for the agent's metrics, the benchmark harness
// and the tests. Bound also reads nfnetlink_log, the same list for NFLOG
// groups. It imports nothing of the project.
package procqueue

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Path is where the kernel lists the bound NFQUEUE queues of the reader's
// network namespace.
const Path = "/proc/net/netfilter/nfnetlink_queue"

// LogPath is where the kernel lists the bound NFLOG groups of the reader's
// network namespace.
const LogPath = "/proc/net/netfilter/nfnetlink_log"

// Queue is one line of /proc/net/netfilter/nfnetlink_queue: the
// kernel's own counters for one bound queue.
type Queue struct {
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

// Parse parses the text of /proc/net/netfilter/nfnetlink_queue:
// one queue a line, "queue_number peer_portid queue_total copy_mode
// copy_range queue_dropped user_dropped id_sequence 1", space-padded.
func Parse(r io.Reader) ([]Queue, error) {
	var out []Queue
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("procqueue: nfnetlink_queue line %d: %d fields, want at least 8", line, len(f))
		}
		var v [8]uint64
		bitsOf := [8]int{16, 32, 64, 8, 32, 64, 64, 64}
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, bitsOf[i])
			if err != nil {
				return nil, fmt.Errorf("procqueue: nfnetlink_queue line %d field %d: %w", line, i+1, err)
			}
			v[i] = n
		}
		out = append(out, Queue{
			Queue: uint16(v[0]), PortID: uint32(v[1]), Waiting: v[2], CopyMode: uint8(v[3]),
			CopyRange: uint32(v[4]), QueueDropped: v[5], UserDropped: v[6], IDSequence: v[7],
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("procqueue: read nfnetlink_queue: %w", err)
	}
	return out, nil
}

// Bound reads the number and holder's netlink port of every line of a
// nfnetlink_queue or nfnetlink_log listing, the two columns they share.
// Lines it cannot read are skipped: its one user only improves an error
// message with it, and a listing of a newer kernel may add columns.
func Bound(r io.Reader) map[uint16]uint32 {
	out := map[uint16]uint32{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, err1 := strconv.ParseUint(f[0], 10, 16)
		port, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out[uint16(n)] = uint32(port)
	}
	return out
}
