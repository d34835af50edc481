package ratelimit

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

// step is one Allow call at a time, and what it must return.
type step struct {
	at   int64
	want bool
}

func burstThenRate() []step {
	// burst 5 at 10/s: five at once, then one per 100 ms.
	steps := []step{}
	for range 5 {
		steps = append(steps, step{0, true})
	}
	return append(steps,
		step{0, false},
		step{99 * ms, false},
		step{100 * ms, true},
		step{100 * ms, false},
		step{199 * ms, false},
		step{200 * ms, true},
		step{250 * ms, false},
		step{300 * ms, true},
		// Idle for 10 s refills to burst, not beyond.
		step{10300 * ms, true}, step{10300 * ms, true}, step{10300 * ms, true},
		step{10300 * ms, true}, step{10300 * ms, true}, step{10300 * ms, false},
	)
}

func TestBucket(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst 5 then 10/s", 10, 5, burstThenRate()},
		{"5/m burst 1", 5.0 / 60, 1, []step{
			{0, true}, {1 * ms, false}, {11999 * ms, false}, {12000 * ms, true}, {12001 * ms, false}, {24000 * ms, true},
		}},
		{"burst 0 counts as 1", 1, 0, []step{{0, true}, {0, false}, {1000 * ms, true}}},
		{"zero rate allows nothing", 0, 10, []step{{0, false}, {1e15, false}}},
		{"NaN rate allows nothing", math.NaN(), 10, []step{{0, false}}},
		{"negative clock", 1, 2, []step{{-5000 * ms, true}, {-5000 * ms, true}, {-5000 * ms, false}, {-4000 * ms, true}}},
		{"large clock", 1, 1, []step{{1 << 61, true}, {1<<61 + 1, false}, {1<<61 + 1000*ms, true}}},
		{"tiny rate is capped, not overflowing", 1e-30, 3, []step{{0, true}, {0, true}, {0, true}, {0, false}, {1 << 61, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBucket(tt.rate, tt.burst)
			for i, s := range tt.steps {
				if got := b.Allow(s.at); got != s.want {
					t.Fatalf("step %d at %d ns: Allow = %v, want %v", i, s.at, got, s.want)
				}
			}
		})
	}
}

func TestBucketConcurrent(t *testing.T) {
	// Many workers at one instant share exactly burst tokens.
	b := NewBucket(1, 100)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if b.Allow(42) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 100 {
		t.Fatalf("allowed %d, want 100", got)
	}
}

func TestBucketNoAllocs(t *testing.T) {
	b := NewBucket(1e6, 10)
	now := int64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		now += 1000
		b.Allow(now)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func BenchmarkBucketAllow(b *testing.B) {
	bk := NewBucket(1e6, 100)
	now := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		now += 500
		bk.Allow(now)
	}
}

func BenchmarkBucketAllowParallel(b *testing.B) {
	bk := NewBucket(1e6, 100)
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bk.Allow(clock.Add(500))
		}
	})
}
