package ratelimit

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
)

func key(i uint64) Key {
	var k Key
	binary.BigEndian.PutUint64(k[:], i)
	binary.BigEndian.PutUint64(k[12:], ^i)
	return k
}

func TestTablePerKey(t *testing.T) {
	tb := NewTable(10, 5, 1000)
	// Each key gets the exact burst-then-rate sequence, independently,
	// even when their calls interleave.
	steps := burstThenRate()
	for i, s := range steps {
		for k := range uint64(20) {
			if got := tb.Allow(key(k), s.at); got != s.want {
				t.Fatalf("key %d step %d at %d ns: Allow = %v, want %v", k, i, s.at, got, s.want)
			}
		}
	}
	if tb.Len() != 20 {
		t.Fatalf("Len = %d, want 20", tb.Len())
	}
}

func TestTableBounded(t *testing.T) {
	const maxKeys = 10000
	tb := NewTable(1, 1, maxKeys)
	// AllocsPerRun calls the function twice (a warm-up, then the measured
	// run); each call brings 500,000 keys never seen before.
	next := uint64(0)
	allocs := testing.AllocsPerRun(1, func() {
		for range 500_000 {
			if !tb.Allow(key(next), int64(next)) {
				t.Fatalf("new key %d denied: a new or evicted bucket starts full", next)
			}
			next++
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations for 1M keys, want 0", allocs)
	}
	if n := tb.Len(); n > maxKeys || n < maxKeys*9/10 {
		t.Fatalf("Len = %d after 1M keys, want at most %d and close to it", n, maxKeys)
	}
}

func TestTableSmall(t *testing.T) {
	for _, maxKeys := range []int{-1, 0, 1, 2, 7, 9, 100} {
		tb := NewTable(1, 1, maxKeys)
		for i := range uint64(50) {
			tb.Allow(key(i), 0)
		}
		if n := tb.Len(); n < 1 || n > max(maxKeys, 1) {
			t.Fatalf("maxKeys %d: Len = %d", maxKeys, n)
		}
	}
}

func TestTableEvictsRefilledFirst(t *testing.T) {
	// One shard, one window of 8 slots: every key competes for them.
	tb := NewTable(1, 1, 8)
	limited := key(1000)
	for i := range uint64(7) {
		tb.Allow(key(i), 0)
	}
	tb.Allow(limited, 0)
	// At 2 s every bucket has refilled; the limited key sends again and
	// is empty until 3 s.
	if !tb.Allow(limited, 2000*ms) {
		t.Fatal("refilled key denied")
	}
	// Seven new keys take the seven refilled slots, not the limited one.
	for i := range uint64(7) {
		tb.Allow(key(100+i), 2000*ms)
	}
	if tb.Allow(limited, 2500*ms) {
		t.Fatal("limited key's bucket was evicted while refilled ones were free")
	}
	if tb.Len() != 8 {
		t.Fatalf("Len = %d, want 8", tb.Len())
	}
}

func TestTableConcurrent(t *testing.T) {
	tb := NewTable(1, 50, 4096)
	shared := key(1 << 40)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for w := range uint64(8) {
		wg.Go(func() {
			for i := range uint64(2000) {
				if tb.Allow(shared, 7) {
					allowed.Add(1)
				}
				tb.Allow(key(w*1_000_000+i), int64(i))
				if i%100 == 0 {
					tb.Len()
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 50 {
		t.Fatalf("shared key allowed %d times, want its burst of 50", got)
	}
	if n := tb.Len(); n > 4096 {
		t.Fatalf("Len = %d, above maxKeys", n)
	}
}

func TestTableNoAllocs(t *testing.T) {
	tb := NewTable(1000, 10, 1<<16)
	i := uint64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		tb.Allow(key(i%100), int64(i)*1000)
		tb.Allow(key(i), int64(i)*1000)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func BenchmarkTableAllow(b *testing.B) {
	for _, c := range []struct {
		name string
		keys uint64
	}{
		{"hit-1k-keys", 1000},
		{"spray-new-keys", 1 << 62},
	} {
		b.Run(c.name, func(b *testing.B) {
			tb := NewTable(1000, 10, 1<<16)
			i := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				i++
				tb.Allow(key(i%c.keys), int64(i)*100)
			}
		})
	}
}

func BenchmarkTableAllowParallel(b *testing.B) {
	tb := NewTable(1000, 10, 1<<16)
	var worker atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		base := worker.Add(1) << 32
		i := uint64(0)
		for pb.Next() {
			i++
			tb.Allow(key(base+i%1000), int64(i)*100)
		}
	})
}
