// Package metrics exposes the agent's state to operators: Prometheus metrics
// on /metrics, and /healthz and /readyz, on a local address.
//
// Nothing here runs per packet. The packet path keeps its own atomic
// counters (internal/pipeline, verdict/, internal/conntrack,
// internal/droplog); the Collector reads them only when /metrics is
// scraped, so a scrape costs a few microseconds and traffic costs nothing
// extra. Kernel-side queue counters come from
// /proc/net/netfilter/nfnetlink_queue, read at scrape time as well.
package metrics
