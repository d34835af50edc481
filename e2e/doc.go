// Package e2e tests the real fwagent binary end to end: it builds the agent,
// runs it inside a throw-away network namespace (internal/testing/testnet) with a
// real policy, sends traffic from a client namespace and checks what got
// through, what was refused and what the agent logged.
//
// The tests need root and the nft and ip programs; without them they skip,
// unless CI=true, where they fail. FWAGENT_BIN names a prebuilt agent to test
// instead of building ./cmd/fwagent.
//
// Run as root from the module root:
//
//	CI=true go test -count=1 ./e2e/
//
// Each test builds its own namespaces, so the tests run in parallel and next
// to other kernel tests on the same machine; a failing test logs the agent's
// stderr, its event log and the namespace's ruleset.
package e2e
