package e2e

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
