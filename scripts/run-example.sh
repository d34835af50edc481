#!/usr/bin/env bash
# Builds fwagent and runs it on the audit-mode example policy: nothing is
# dropped, packets the policy would drop are logged as would_drop events on
# stdout. Safe on your own machine; Ctrl-C removes the agent's nft table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export PATH="/usr/local/go/bin:$PATH"
mkdir -p bin
go build -o bin/fwagent ./cmd/fwagent
bin/fwagent check policies/examples/log-only.yaml
exec bin/fwagent run --policy policies/examples/log-only.yaml "$@"
