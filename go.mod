module github.com/fwagent/fwagent

go 1.26.0

// Pinned on purpose. go-nflog/v2 v2.3.0 pulls a pre-release of
// mdlayher/netlink that panics ("slice bounds out of range") on the first
// netlink message whose length is not a multiple of 4 (a queued packet of odd
// length). v1.10.0 panics the same way, v1.11.0 rejects such messages and
// v1.11.1 blocks Send while Receive waits, which deadlocks verdicts against
// the reader. v1.11.2 is the first release that works with go-nfqueue/v2
// v2.1.0 and go-nflog/v2 v2.3.0; internal tests queue odd-length packets to
// keep it that way.
require github.com/mdlayher/netlink v1.11.2

// The mandated netfilter and packet libraries, at the versions verified on
// the target kernels (the module proxy refuses @latest for the first two).
require (
	github.com/florianl/go-nflog/v2 v2.3.0
	github.com/florianl/go-nfqueue/v2 v2.1.0
	github.com/google/gopacket v1.1.19
	github.com/google/nftables v0.3.0
)

// Two YAML libraries, both only in policies/policyload and policies/format
// (the engine imports neither). yaml.v3 decodes the policy into a node tree
// with line and column, and keeps comments and styles for `fwagent fmt`;
// its syntax errors carry only a line, often an earlier one than the
// fault, so goccy re-parses a policy that does not parse and gives the
// column (and `fwagent fmt` checks with goccy's lexer, an independent
// reader, that it kept every comment). goccy alone would accept an alias to a missing anchor (an
// unquoted `*.example`) that must be an error, change every syntax
// message, and need a new formatter.
require (
	github.com/goccy/go-yaml v1.19.2
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/fsnotify/fsnotify v1.10.1
	github.com/gaissmai/bart v0.30.0
	github.com/prometheus/client_golang v1.25.0
	github.com/prometheus/client_model v0.6.3
	github.com/prometheus/common v0.72.0
	github.com/quic-go/quic-go v0.65.0
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.2
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/net v0.59.0
	golang.org/x/sys v0.48.0
	gopkg.in/natefinch/lumberjack.v2 v2.2.1
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/mdlayher/socket v0.6.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/quic-go/qpack v0.6.0 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
