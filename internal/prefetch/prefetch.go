// Package prefetch asks the CPU to start loading a cache line that the
// caller will read soon.
//
// Go has no prefetch intrinsic outside the runtime. An ordinary load does
// not serve: it cannot retire until its data arrives, so a loop of lookups
// into a table much larger than the cache waits out one memory latency at a
// time, while prefetches retire at once and let a batch of lookups wait for
// their memory together (BenchmarkRandomRead; see bench/README.md, Figures
// behind design choices).
package prefetch

// Line hints that the cache line holding addr will be read soon. It never
// faults and has no effect the program can observe but speed, so addr may be
// stale or wrong; it is a uintptr so a stale address keeps nothing alive.
func Line(addr uintptr) { line(addr) }
