package policyload

import "slices"

// The keys of each mapping of the policy format, as the loader accepts
// them. They live here, together, so that tools describing the format (the
// JSON Schema in policies/schema) read the same lists the loader does.
var (
	policyKeys      = []string{"version", "mode", "default", "on_error", "sets", "rules", "tests"}
	defaultKeys     = []string{"input", "forward", "output", "log"}
	onErrorKeys     = []string{"input", "forward", "output"}
	setFileKeys     = []string{"file"}
	logKeys         = []string{"prefix"}
	limitKeys       = []string{"rate", "burst", "per", "over"}
	payloadKeys     = []string{"contains", "hex", "offset", "depth"}
	testKeys        = []string{"packet", "expect", "rule"}
	testPayloadKeys = []string{"contains", "hex"}
)

// Vocabulary is the policy format's keys and names as this loader reads
// them: what a schema or an editor needs to describe the format, taken
// from the loader's own tables so the description cannot drift from it.
type Vocabulary struct {
	// Sections maps each kind of mapping in a policy to its keys, in the
	// loader's order: policy (the top level), default, on_error, set (a
	// set written {file: PATH}), rule, log ({prefix}), limit, match,
	// payload, test, packet (a test's) and test_payload.
	Sections map[string][]string
	// Protos are the protocol names (a number 0-255 is also accepted).
	Protos []string
	// States are the flow states.
	States []string
	// ICMPTypes are the ICMP and ICMPv6 type names, sorted, without
	// duplicates (a number 0-255 is also accepted).
	ICMPTypes []string
	// TCPFlags are the flag letters of tcp_flags, in bit order.
	TCPFlags string
	// Hooks, Actions and OnErrorActions are the values of hook, action
	// and on_error.
	Hooks, Actions, OnErrorActions []string
	// Modes are the values of mode.
	Modes []string
	// LimitPer are the values of a limit's per.
	LimitPer []string
}

// FormatVocabulary returns the policy format's vocabulary. Each call
// returns fresh slices.
func FormatVocabulary() Vocabulary {
	c := slices.Clone[[]string]
	protos := append(keys(protoNames), "ipv6-icmp", "icmp6")
	slices.Sort(protos)
	return Vocabulary{
		Sections: map[string][]string{
			"policy":       c(policyKeys),
			"default":      c(defaultKeys),
			"on_error":     c(onErrorKeys),
			"set":          c(setFileKeys),
			"rule":         c(ruleKeys),
			"log":          c(logKeys),
			"limit":        c(limitKeys),
			"match":        c(matchKeys),
			"payload":      c(payloadKeys),
			"test":         c(testKeys),
			"packet":       c(testPacketKeys),
			"test_payload": c(testPayloadKeys),
		},
		Protos:         protos,
		States:         keys(stateNames),
		ICMPTypes:      icmpNames(),
		TCPFlags:       tcpFlagLetters,
		Hooks:          []string{"input", "forward", "output"},
		Actions:        []string{"accept", "drop", "reject"},
		OnErrorActions: []string{"accept", "drop"},
		Modes:          []string{"enforce", "audit"},
		LimitPer:       []string{"src", "dst", "flow"},
	}
}
