package capture_test

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/packet"
)

func Example() {
	var file bytes.Buffer
	w, err := capture.NewWriter(&file)
	if err != nil {
		panic(err)
	}
	pkt, _ := packet.Build(packet.Spec{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: packet.ProtoUDP, SrcPort: 1234, DstPort: 53,
	})
	if err := w.Write(time.Unix(1700000000, 0), pkt); err != nil {
		panic(err)
	}

	r, err := capture.Open(&file)
	if err != nil {
		panic(err)
	}
	d := packet.NewDecoder()
	var p packet.Packet
	for {
		f, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		if err := d.Decode(f.Data, &p); err != nil {
			fmt.Println("frame", f.Index+1, err)
			continue
		}
		fmt.Println("frame", f.Index+1, f.Timestamp.UTC().Format(time.RFC3339), p.Src, "->", p.Dst, p.DstPort)
	}
	fmt.Println("skipped", r.Skipped())
	// Output:
	// frame 1 2023-11-14T22:13:20Z 192.0.2.1 -> 192.0.2.2 53
	// skipped 0
}
