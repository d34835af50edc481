package ratelimit

import (
	"math"
	"sync/atomic"
)

// maxSpan bounds burst*interval so that now+interval and now+tolerance
// cannot overflow for any monotonic clock below 2^62 ns (146 years).
const maxSpan = 1 << 60

// gcra holds the parameters of the generic cell rate algorithm (ITU-T
// I.371), a token bucket kept as one number: the theoretical arrival time
// (TAT) of the next packet if the bucket were to stay empty. A packet at now
// conforms when TAT-now <= tolerance; it then moves TAT to max(TAT, now) +
// interval. Non-conforming packets leave TAT alone, so packets over the rate
// do not consume tokens.
type gcra struct {
	// interval is the time that refills one token, 1e9/rate nanoseconds.
	interval int64
	// tolerance is (burst-1)*interval: how far ahead of now TAT may be.
	tolerance int64
	// never is set for a rate that is not positive: nothing conforms.
	never bool
}

func newGCRA(ratePerSec float64, burst int) gcra {
	burst = max(burst, 1)
	if !(ratePerSec > 0) { // also NaN
		return gcra{never: true}
	}
	interval := math.Round(1e9 / ratePerSec)
	if limit := float64(maxSpan / burst); interval > limit {
		interval = limit
	}
	iv := int64(interval)
	return gcra{interval: iv, tolerance: int64(burst-1) * iv}
}

// next returns the TAT after a packet at now, and whether it conforms.
// tat == math.MinInt64 is a full bucket never used.
func (g gcra) next(tat, now int64) (int64, bool) {
	if g.never || (tat > now && tat-now > g.tolerance) {
		return tat, false
	}
	return max(tat, now) + g.interval, true
}

// Bucket is a token bucket that starts full with burst tokens and refills
// at ratePerSec. It is safe for concurrent use and does not allocate.
type Bucket struct {
	g   gcra
	tat atomic.Int64
}

// NewBucket returns a full bucket. A burst below 1 counts as 1; a rate that
// is not positive allows nothing (the policy compiler rejects such rates);
// a rate so low that burst tokens would take more than 36 years to refill
// is raised to that.
func NewBucket(ratePerSec float64, burst int) *Bucket {
	b := &Bucket{g: newGCRA(ratePerSec, burst)}
	b.tat.Store(math.MinInt64)
	return b
}

// Allow reports whether a packet at now (monotonic nanoseconds) is within
// the rate, and if so takes a token.
func (b *Bucket) Allow(now int64) bool {
	for {
		tat := b.tat.Load()
		next, ok := b.g.next(tat, now)
		if !ok {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}
