#!/bin/sh
# Longer run of the kernel-vs-userspace differential test (rules/): many
# generated policies and packets through the compiled nft table in a
# namespace and through the userspace engine, on input and on output.
# Needs root, nft, conntrack.
# Usage: scripts/differential.sh [POLICIES [PACKETS [SEED]]]
set -eu
cd "$(dirname "$0")/.."
policies=${1:-300}
packets=${2:-40}
seed=${3:-0}
exec go test -count=1 -v -run '^TestDifferentialKernelUserspace(Output)?$' -timeout 60m ./rules/ \
	-args -diff.policies="$policies" -diff.packets="$packets" -diff.seed="$seed"
