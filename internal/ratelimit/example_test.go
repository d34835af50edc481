package ratelimit_test

import (
	"fmt"
	"time"

	"github.com/fwagent/fwagent/internal/ratelimit"
)

func Example() {
	// limit: {rate: 10/s, burst: 3, per: src}
	t := ratelimit.NewTable(10, 3, 1<<16)
	var src ratelimit.Key
	copy(src[:], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1})

	start := int64(0) // the caller's monotonic clock, in nanoseconds
	for i := range 5 {
		fmt.Print(t.Allow(src, start+int64(i)), " ")
	}
	fmt.Println(t.Allow(src, start+int64(100*time.Millisecond)))
	// Output: true true true false false true
}
