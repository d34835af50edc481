package agent

import (
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/sockcgroup"
	"github.com/fwagent/fwagent/policies"
)

// openCgroups opens the cgroup finder for cgroup rules and drop-log events,
// on the cgroup2 mount this process sees. Without one, cgroup rules match
// nothing, which is said loudly when the policy has any (a reload may add
// them, so the finder is opened whatever the policy). nil when unavailable.
func openCgroups(log *slog.Logger, prog *policies.Program) *sockcgroup.Finder {
	warn := log.Debug
	if prog.UsesCgroup() {
		warn = log.Warn
	}
	mount, err := sockcgroup.HostMount()
	if err != nil {
		// `ip netns exec` mounts a fresh /sys, hiding the cgroup2 mount.
		warn("cgroup rules match nothing: no cgroup2 mount is visible (if started with ip netns exec, use nsenter --net instead)", "err", err)
		return nil
	}
	f, err := sockcgroup.Open(mount, log)
	if err != nil {
		warn("cgroup rules match nothing", "err", err)
		return nil
	}
	log.Debug("cgroup finder", "mount", mount)
	return f
}

// logCgroup adapts a finder to droplog.Config.Cgroup.
func logCgroup(f *sockcgroup.Finder) func(*packet.Packet, uint8) (string, bool) {
	if f == nil {
		return nil
	}
	return func(p *packet.Packet, hook uint8) (string, bool) {
		switch hook {
		case unix.NF_INET_LOCAL_IN:
			return f.Cgroup(p, nf.HookInput)
		case unix.NF_INET_LOCAL_OUT:
			return f.Cgroup(p, nf.HookOutput)
		}
		return "", false
	}
}
