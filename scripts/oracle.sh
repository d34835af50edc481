#!/bin/sh
# Longer run of the e2e oracle test: random L3/L4 policies with state,
# translated by hand to nftables, the same real probes through the
# kernel-only table and through the agent (--kernel-rules auto and off);
# every difference is a failure with the policy, the table and the probes
# printed. Needs root, nft; builds the agent.
# Usage: scripts/oracle.sh [POLICIES [SEED]]
set -eu
cd "$(dirname "$0")/.."
policies=${1:-100}
seed=${2:-0}
exec go test -count=1 -v -run '^TestOracleAgentMatchesNftReference$' -timeout 120m ./e2e/ \
	-args -oracle.policies="$policies" -oracle.seed="$seed"
