package nf

// Hook is the netfilter hook a packet was queued from.
type Hook uint8

const (
	HookInput Hook = iota
	HookForward
	HookOutput
	NumHooks
)

func (h Hook) String() string {
	switch h {
	case HookInput:
		return "input"
	case HookForward:
		return "forward"
	case HookOutput:
		return "output"
	}
	return "unknown"
}

// ParseHook maps a hook name to a Hook.
func ParseHook(s string) (Hook, bool) {
	switch s {
	case "input":
		return HookInput, true
	case "forward":
		return HookForward, true
	case "output":
		return HookOutput, true
	}
	return 0, false
}
