#!/usr/bin/env bash
# Soak the agent: scripts/soak.sh [DURATION]   (Go duration, default 10m)
#
# Runs e2e TestSoak for DURATION: one agent in a throw-away network
# namespace under a mixed workload (short and long TCP connections, refused
# and rejected ones, a paced UDP stream over changing flows, DNS allowed and
# blocked, pings, malformed frames, a policy reload every 5 s). It samples
# the agent's RSS, peak RSS, threads, open fds and goroutines (from its
# metrics endpoint) every tenth of the run and fails if, after the workload
# stops, any of them is above its post-warm-up value by more than a small
# margin. CI runs the same test for 60 s. Needs root (namespaces, nft).
# FWAGENT_BIN=path tests a prebuilt agent instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10m}
export PATH="/usr/local/go/bin:$PATH"
export FWAGENT_SOAK="$duration"
# The test's own bound is the duration plus set-up; go test's -timeout must
# exceed it.
exec go test -count=1 -v -run '^TestSoak$' -timeout 0 ./e2e/
