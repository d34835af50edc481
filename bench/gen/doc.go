// Package gen is the benchmark's traffic: an open-loop UDP sender at a fixed
// or maximum rate, a UDP sink that counts packets per flow, a UDP echo server
// and a prober that measures round-trip latency percentiles, and a TCP
// connect-rate client with its server.
//
// Every tool talks only to the address it is given; bench/e2e runs them
// inside namespaces it built, so the traffic never leaves the machine. The
// sender and the sink move many datagrams per syscall (sendmmsg, recvmmsg)
// because on a two-core machine one sender core is the ceiling of the whole
// measurement, and what the sender actually offered is reported, never
// assumed.
package gen
