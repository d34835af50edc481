// Command e2e runs the end-to-end verdict throughput harness
// (bench/harness) from a checkout: `sudo go run ./bench/e2e`. It builds the
// handlers from the repository, and, re-executed inside a namespace as `e2e
// gen ...`, is the traffic generator. `fwagent bench` runs the same harness
// from an installed binary. See bench/README.md for the method.
package main
