// Package e2e tests the real fwagent binary end to end: it builds the agent,
// runs it inside a throw-away network namespace (internal/testnet) with a
// real policy, sends traffic from a client namespace and checks what got
// through, what was refused and what the agent logged.
//
// The tests need root and the nft and ip programs; without them they skip,
// unless CI=true, where they fail. FWAGENT_BIN names a prebuilt agent to test
// instead of building ./cmd/fwagent.
package e2e
