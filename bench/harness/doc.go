// Package harness is the end-to-end verdict throughput benchmark: it builds
// its own client and server network namespaces, starts each firewall
// configuration in turn (kernel only, the go-nfqueue README loop, a C
// libnetfilter_queue loop, fwagent in several shapes, and ulogd2 for the drop
// log), drives traffic with bench/gen pinned to one core while the firewall
// path is pinned to the other, and writes a markdown table, JSON and an SVG
// chart.
//
// Two commands run it: `go run ./bench/e2e` from a checkout, and `fwagent
// bench` from an installed binary with no Go toolchain or checkout. Either
// re-executes itself inside a namespace as the traffic generator (Env.Exe
// with Env.GenArgs, then RunGen), so the sender and sink are separate
// processes that can be pinned and measured on their own. Handlers that
// need what the machine lacks are skipped with a line saying why: the
// go-nfqueue loop needs the Go toolchain and a checkout, the C loop gcc and
// libnetfilter_queue's header, the drop-log baseline ulogd2. See
// bench/README.md for the method.
package harness
