package l7_test

import (
	"fmt"

	"github.com/fwagent/fwagent/internal/l7"
)

func Example() {
	ads, err := l7.NewNameMatcher([]string{"*.ads.example", "tracker.example"})
	if err != nil {
		panic(err)
	}
	query := []byte{
		0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header: a query, one question
		6, 'B', 'a', 'n', 'n', 'e', 'r', 3, 'a', 'd', 's', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0,
		0, 1, 0, 1, // A, IN
	}
	var buf [l7.MaxNameLen]byte
	name, err := l7.DNSQueryName(query, buf[:0])
	fmt.Println(string(name), err, ads.Match(name))
	fmt.Println(ads.Match([]byte("ads.example")), ads.Match([]byte("Tracker.Example.")))
	// Output:
	// banner.ads.example <nil> true
	// false true
}
