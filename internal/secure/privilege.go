package secure

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// ExplainPrivilege adds what the agent needs to an error caused by missing
// privilege, so an agent started without CAP_NET_ADMIN says so instead of
// only "operation not permitted" from deep inside a netlink call. Other
// errors, and nil, are returned as they are.
func ExplainPrivilege(err error) error {
	if err == nil {
		return nil
	}
	// Some netlink libraries flatten the errno into text, so the text is
	// checked too.
	if !errors.Is(err, syscall.EPERM) && !strings.Contains(err.Error(), syscall.EPERM.Error()) {
		return err
	}
	return fmt.Errorf("%w (the agent needs CAP_NET_ADMIN: run it as root, or grant the capability, e.g. systemd AmbientCapabilities=CAP_NET_ADMIN)", err)
}
