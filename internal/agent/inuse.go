package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/fwagent/fwagent/internal/procqueue"
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
	bound := procqueue.Bound(f)
	for _, n := range nums {
		if port, ok := bound[n]; ok {
			return fmt.Errorf("agent: %s %d is bound by another process (netlink port %d; in this network namespace, e.g. another NFQUEUE/NFLOG reader): stop it or choose another with %s", what, n, port, flag)
		}
	}
	return err
}
