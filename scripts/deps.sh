#!/usr/bin/env bash
# Installs what building, running and testing fwagent needs on Debian/Ubuntu:
# the netfilter tools the tests drive, and a Go toolchain if there is none.
# Idempotent: it only calls apt-get when something is missing.
set -euo pipefail

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have nft       || need_pkgs+=(nftables)
have ip        || need_pkgs+=(iproute2)
have conntrack || need_pkgs+=(conntrack)
have ping      || need_pkgs+=(iputils-ping)
have tcpdump   || need_pkgs+=(tcpdump)      # tests read the pcaps we write with it
have setpriv   || need_pkgs+=(util-linux)   # setpriv, unshare, taskset
have nsenter   || need_pkgs+=(util-linux)   # owner tests enter a netns keeping the host's cgroup2 mount
have timeout   || need_pkgs+=(coreutils)
have bash      || need_pkgs+=(bash)         # owner tests connect with bash's /dev/tcp
have systemd-analyze || need_pkgs+=(systemd) # verifies deploy/fwagent.service
have gcc       || need_pkgs+=(gcc libc6-dev)
have git       || need_pkgs+=(git)
have curl      || need_pkgs+=(ca-certificates curl)
have ss        || need_pkgs+=(iproute2)     # the L7 reject tests look for sockets left behind
# Real clients and servers for the L7 tests (e2e/l7stream_test.go,
# e2e/l7browser_test.go). dnsmasq-base is the binary without the service,
# so nothing starts listening on the host.
have dnsmasq   || need_pkgs+=(dnsmasq-base)
have dig       || need_pkgs+=(dnsutils)
have openssl   || need_pkgs+=(openssl)
have chromium  || need_pkgs+=(chromium)
# The C libnetfilter_queue baseline of the benchmark harness.
[ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || need_pkgs+=(libnetfilter-queue-dev)
# The harness's TCP bulk stream (kernel only, inspected, offloaded).
have iperf3    || need_pkgs+=(iperf3)
# The harness's drop-log baseline: ulogd2 with its JSON output plugin.
have ulogd     || need_pkgs+=(ulogd2)
compgen -G '/usr/lib/*/ulogd/ulogd_output_JSON.so' >/dev/null || need_pkgs+=(ulogd2-json)
if ! have go && [ ! -x /usr/local/go/bin/go ]; then
	need_pkgs+=(golang-go)
fi

if [ "${#need_pkgs[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need_pkgs[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${need_pkgs[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The module needs Go 1.26. Any Go from 1.21 on fetches the right toolchain
# by itself through the module proxy (GOTOOLCHAIN=auto); older distribution
# packages cannot, and we say so rather than fail obscurely later.
export PATH="/usr/local/go/bin:$PATH"
gov=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
case "$gov" in
	1.1[0-9]*|1.20*|"")
		echo "deps: Go $gov is too old (need 1.21+ to fetch Go 1.26); install Go from https://go.dev/dl/ into /usr/local/go" >&2
		exit 1 ;;
esac
