package e2e

import (
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// webPolicy is the policy most agent tests start from: what arrives is
// dropped and logged, but tcp/8080. A test that needs more appends its own
// rules to it (the rules list is last).
const webPolicy = "version: 1\n" + webPolicyBody

// webPolicyBody is webPolicy without its version line, for a policy that
// sets a mode before it.
const webPolicyBody = `default:
  input: drop
  log: true
rules:
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
`

// statefulWebRules is a rules list that admits what the kernel's conntrack
// calls established or related, and new connections to tcp/8080.
const statefulWebRules = `rules:
  - name: established
    match: {state: [established, related]}
    action: accept
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
`

// agentNet is the preamble of most agent tests: it skips where the agent
// cannot run, lets the test run alongside the others, and returns a
// client and server pair of namespaces whose server echoes TCP on each of
// echoPorts.
func agentNet(t *testing.T, echoPorts ...int) *testnet.Net {
	t.Helper()
	requireKernelTools(t)
	t.Parallel()
	n := testnet.New(t)
	for _, p := range echoPorts {
		serveTCP(t, n.Server, p)
	}
	return n
}

// routerNet is agentNet's preamble for a test of the forward hook: client
// and server namespaces with a router between them, no servers yet.
func routerNet(t *testing.T) *testnet.Net {
	t.Helper()
	requireKernelTools(t)
	t.Parallel()
	return testnet.New(t, testnet.WithRouter())
}

// inNS runs f in ns (see testnet.NS.Do) and returns what it made, a socket
// or a listener of that namespace, failing the test if it could not.
func inNS[T any](t *testing.T, ns *testnet.NS, f func() (T, error)) T {
	t.Helper()
	var v T
	if err := ns.Do(func() (err error) {
		v, err = f()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}
