package prefetch

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestLineIsHarmless prefetches valid, stale and invalid addresses: a
// prefetch must never fault or change memory.
func TestLineIsHarmless(t *testing.T) {
	buf := make([]uint64, 1024)
	for i := range buf {
		buf[i] = uint64(i)
	}
	for i := range buf {
		Line(uintptr(unsafe.Pointer(&buf[i])))
	}
	for _, a := range []uintptr{0, 1, 4096, ^uintptr(0), ^uintptr(0) - 4095} {
		Line(a)
	}
	for i, v := range buf {
		if v != uint64(i) {
			t.Fatalf("buf[%d] = %d after prefetching, want %d", i, v, i)
		}
	}
}

var sink uint64

// BenchmarkRandomRead reads random words of a 128 MB array in groups of 16,
// with and without prefetching the group first: the gap is the memory
// latency prefetching hides.
func BenchmarkRandomRead(b *testing.B) {
	const n = 128 << 20 / 8
	arr := make([]uint64, n)
	for i := range arr {
		arr[i] = uint64(i)
	}
	idx := make([]uint32, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range idx {
		idx[i] = uint32(r.IntN(n))
	}
	for _, pf := range []bool{false, true} {
		name := "plain"
		if pf {
			name = "prefetched"
		}
		b.Run(name, func(b *testing.B) {
			// Each read's address depends on the one before (through a
			// term that is always zero), as a table lookup's entry address
			// depends on its index probe.
			var j uint64
			for i := 0; i < b.N; i += 16 {
				if pf {
					for k := range 16 {
						Line(uintptr(unsafe.Pointer(&arr[idx[(i+k)&(len(idx)-1)]])))
					}
				}
				for k := range 16 {
					j = arr[uint64(idx[(i+k)&(len(idx)-1)])+j>>63]
				}
			}
			sink += j
		})
	}
}
