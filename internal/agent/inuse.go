package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Where the kernel lists, per network namespace, the bound NFQUEUE queues
// and NFLOG groups: one a line, the number then the holder's netlink port.
const (
	procQueues = "/proc/net/netfilter/nfnetlink_queue"
	procLogs   = "/proc/net/netfilter/nfnetlink_log"
)

// inUse rewrites a bind error for a queue or log group that another
// process holds. The kernel answers such a bind with EPERM, the same errno
// as for a missing CAP_NET_ADMIN, so without this the operator is told to
// add a capability the agent already has. The kernel's own list of bound
// numbers tells the two apart. The result does not wrap the EPERM, so
// secure.ExplainPrivilege leaves it alone.
func inUse(err error, what, flag, proc string, nums []uint16) error {
	if err == nil || (!errors.Is(err, syscall.EPERM) && !strings.Contains(err.Error(), syscall.EPERM.Error())) {
		return err
	}
	f, oerr := os.Open(proc)
	if oerr != nil {
		return err
	}
	defer f.Close()
	bound := parseBound(f)
	for _, n := range nums {
		if port, ok := bound[n]; ok {
			return fmt.Errorf("agent: %s %d is bound by another process (netlink port %d; in this network namespace, e.g. another NFQUEUE/NFLOG reader): stop it or choose another with %s", what, n, port, flag)
		}
	}
	return err
}

// parseBound reads the number and netlink port of every line of a
// nfnetlink_queue or nfnetlink_log listing; lines it cannot read are
// skipped (this only improves a message).
func parseBound(r io.Reader) map[uint16]uint32 {
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
