package procqueue

import (
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []Queue
		wantErr bool
	}{
		{name: "empty", text: ""},
		{
			name: "two queues as the kernel pads them",
			text: "    0 4026531 0 2 65535     0     0      142  1\n  100   2231    12 2 65531    3     7  9000000  1\n",
			want: []Queue{
				{Queue: 0, PortID: 4026531, CopyMode: 2, CopyRange: 65535, IDSequence: 142},
				{Queue: 100, PortID: 2231, Waiting: 12, CopyMode: 2, CopyRange: 65531, QueueDropped: 3, UserDropped: 7, IDSequence: 9000000},
			},
		},
		{name: "blank lines", text: "\n  5 1 0 2 10 0 0 1 1\n\n", want: []Queue{{Queue: 5, PortID: 1, CopyMode: 2, CopyRange: 10, IDSequence: 1}}},
		{name: "ids past 2^32 on a future kernel", text: "1 1 0 2 1 0 0 4294967297 1\n", want: []Queue{{Queue: 1, PortID: 1, CopyMode: 2, CopyRange: 1, IDSequence: 1<<32 + 1}}},
		{name: "short line", text: "0 1 2 3\n", wantErr: true},
		{name: "not a number", text: "0 1 x 2 65535 0 0 1 1\n", wantErr: true},
		{name: "queue number out of range", text: "65536 1 0 2 65535 0 0 1 1\n", wantErr: true},
		{name: "negative", text: "0 -1 0 2 65535 0 0 1 1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("    0 4026531 0 2 65535     0     0      142  1\n"))
	f.Add([]byte("1 2 3 4 5 6 7 8\n9 9 9 9 9 9 9 9 9 9\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		qs, err := Parse(strings.NewReader(string(b)))
		if err != nil && qs != nil {
			t.Fatal("queues returned with an error")
		}
		// Whatever parses prints back, in the kernel's format, to the same
		// queues.
		var out strings.Builder
		for _, q := range qs {
			fmt.Fprintf(&out, "%5d %6d %5d %1d %5d %5d %5d %8d %2d\n", q.Queue, q.PortID, q.Waiting, q.CopyMode, q.CopyRange, q.QueueDropped, q.UserDropped, q.IDSequence, 1)
		}
		again, err := Parse(strings.NewReader(out.String()))
		if err != nil || !reflect.DeepEqual(again, qs) {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", qs, out.String(), again, err)
		}
	})
}

func TestBound(t *testing.T) {
	// One line of each listing, as the kernel prints them: nfnetlink_queue
	// (9 columns) and nfnetlink_log (7), then lines to skip.
	in := "    3   4242     0 2 65531     0     0        0  1\n  100  12345     0 2 65535     0  1\nx y\n\n70000 1\n7\n"
	got := Bound(strings.NewReader(in))
	want := map[uint16]uint32{3: 4242, 100: 12345}
	if !maps.Equal(got, want) {
		t.Errorf("Bound = %v, want %v", got, want)
	}
}

func FuzzBound(f *testing.F) {
	f.Add([]byte("    3   4242     0 2 65531     0     0        0  1\n  100  12345     0 2 65535     0  1\n"))
	f.Add([]byte("x y\n\n1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for n := range Bound(strings.NewReader(string(b))) {
			if !strings.Contains(string(b), fmt.Sprint(n)) {
				t.Fatalf("number %d not in the input", n)
			}
		}
	})
}
