// Command e2e is the end-to-end verdict throughput harness: it builds its
// own client and server network namespaces, starts each firewall
// configuration in turn (kernel only, the go-nfqueue README loop, a C
// libnetfilter_queue loop, fwagent in several shapes, and ulogd2 for the drop
// log), drives traffic with bench/gen pinned to one core while the firewall
// path is pinned to the other, and writes a markdown table, JSON and an SVG
// chart to bench/out/.
//
// Run it from the repository root as root: `go run ./bench/e2e`. The same
// binary, re-executed inside a namespace as `e2e gen ...`, is the traffic
// generator, so the sender and sink are separate processes that can be
// pinned and measured on their own. See bench/README.md for the method.
package main
