// Package replay runs a capture through the agent's own decode, flow
// tracking and decision pipeline, as the live agent would see its packets:
// for `fwagent eval` and `fwagent diff --capture`.
//
// What differs from reading the capture naively, and why:
//   - A frame cut by the capture's snap length (tcpdump -s 96), or shorter
//     than its IP header's length, is decided from its headers when they
//     are whole (pipeline.Meta.Cut): the live
//     agent sees the whole packet, and every L3/L4 field lies in the
//     headers. An L7 field (dns_qname, tls_sni, payload) reads what was
//     captured, so a rule that needs the missing bytes does not match and
//     the packet falls through to later rules, as a packet the L7 parser
//     cannot read does live.
//   - IPv4 and IPv6 fragments are reassembled (Reassembler) before they
//     are decided, as the kernel's conntrack defragments before the
//     agent's queue sees them; a datagram that never completes is decided
//     fragment by fragment and counted.
//   - Frames that carry no IP packet, and bad records, are skipped and
//     counted by reason (Summary.Skipped); a bad record is also a warning.
//   - With Options.Auto, each packet runs on the hook its direction implies
//     (Options.HookFor).
package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/policies"
)

// Options say how the capture's packets reach the policy.
type Options struct {
	// Hook is the hook every packet runs on, or with Auto the hook of a
	// packet whose direction neither the capture nor Local tells.
	Hook nf.Hook
	// Auto picks each packet's hook from its direction (see HookFor).
	Auto bool
	// Local are the capturing host's addresses, for Auto when the capture
	// records no direction.
	Local []netip.Prefix
	// InIf and OutIf are the interface names every packet gets.
	InIf, OutIf string
	// NoReassembly decides fragments one by one instead of reassembling.
	NoReassembly bool
	// Warn, if set, is told of bad records skipped (frame number, why).
	Warn func(frame int, msg string)
}

// HookFor is the hook a packet runs on with Auto: the capture's direction
// where it records one (pcapng epb_flags, a Linux cooked capture's packet
// type): received for this host → input, sent by it → output, received
// for another host → forward. Else, with Local: to a local address →
// input, from one → output, neither → forward. Else o.Hook.
func (o *Options) HookFor(dir capture.Direction, src, dst netip.Addr) nf.Hook {
	if !o.Auto {
		return o.Hook
	}
	switch dir {
	case capture.DirIn:
		return nf.HookInput
	case capture.DirOut:
		return nf.HookOutput
	case capture.DirOther:
		return nf.HookForward
	}
	if len(o.Local) == 0 || !src.IsValid() {
		return o.Hook
	}
	local := func(a netip.Addr) bool {
		for _, p := range o.Local {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	switch {
	case local(dst):
		return nf.HookInput
	case local(src):
		return nf.HookOutput
	}
	return nf.HookForward
}

// Packet is one decided packet.
type Packet struct {
	// N is the frame number as Wireshark counts (skipped frames count); a
	// reassembled datagram has the number of the fragment that completed it.
	N    int
	Hook nf.Hook
	// Result is the pipeline's decision; Pkt the decoded packet (valid
	// only during the callback, and only when Result.DecodeErr is nil).
	Result pipeline.Result
	Pkt    *packet.Packet
	// Size is the bytes decided: captured bytes, or the reassembled
	// datagram's.
	Size int
	// Cut: the frame was cut by the snap length and decided from its
	// headers.
	Cut bool
	// Fragments is how many fragments were reassembled into this packet
	// (0: it was not fragmented), FragmentFrames their frame numbers,
	// ascending (N is the last to arrive, not always the largest).
	// Unreassembled is set for a fragment decided alone because its
	// datagram never completed.
	Fragments      int
	FragmentFrames []int
	Unreassembled  bool
}

// Summary counts what a run read.
type Summary struct {
	// Frames is every frame of the capture; Decided the packets decided.
	Frames, Decided int
	// Cut counts packets decided from headers of a cut frame.
	Cut int
	// Reassembled counts datagrams rebuilt from fragments, Fragments the
	// fragments that went into them, Unreassembled fragments decided alone.
	Reassembled, Fragments, Unreassembled int
	// Skipped counts frames not decided, by reason.
	Skipped map[string]int
}

// SkippedTotal is the number of frames skipped.
func (s *Summary) SkippedTotal() int {
	n := 0
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

// Run decides every packet of the capture in r with prog, calling each for
// every packet in order; an error from each stops the run and is returned.
func Run(prog *policies.Program, r io.Reader, o Options, each func(*Packet) error) (Summary, error) {
	sum := Summary{Skipped: map[string]int{}}
	rd, err := capture.Open(bufio.NewReaderSize(r, 1<<16))
	if err != nil {
		return sum, err
	}
	rd.Warn = o.Warn
	marks, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		return sum, err
	}
	shared := pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: 1}, marks, conntrack.New(conntrack.Config{}))
	rn := &runState{o: o, each: each, w: shared.NewWorker(), dec: packet.NewDecoder(), sum: &sum}
	if !o.NoReassembly {
		rn.reasm = NewReassembler()
	}
	ipFrames := 0
	for {
		fr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sum, fmt.Errorf("replay: %w", err)
		}
		ipFrames++
		if err := rn.frame(&fr); err != nil {
			return sum, err
		}
	}
	if rn.reasm != nil {
		for _, ex := range rn.reasm.Flush() {
			if err := rn.decide(ex.Data, ex.N, rn.last, capture.DirUnknown, false, nil, true); err != nil {
				return sum, err
			}
		}
	}
	sum.Frames = ipFrames + rd.Skipped()
	for k, v := range rd.SkippedBy() {
		sum.Skipped[k] += v
	}
	return sum, nil
}

// runState is one Run's state between frames.
type runState struct {
	o     Options
	each  func(*Packet) error
	w     *pipeline.Worker
	dec   *packet.Decoder
	hdr   packet.Packet
	reasm *Reassembler // nil with Options.NoReassembly
	sum   *Summary
	// t0 is the capture's first timestamp, once started; last the latest.
	t0, last int64
	started  bool
}

// frame decides one IP frame of the capture, or adds it to a datagram
// being reassembled (deciding the datagram when it completes).
func (rn *runState) frame(fr *capture.Frame) error {
	// Limits and flow timeouts run on the capture's clock, counted from
	// its first packet. A packet without a timestamp (pcapng simple
	// packet block) arrives with the one before it. Whether t0 is set is
	// its own flag: a capture may start at the Unix epoch (the drop-log
	// pcap sink writes unknown times as 0).
	ts := rn.last
	if !fr.Timestamp.IsZero() {
		ts = fr.Timestamp.UnixNano()
	}
	if !rn.started {
		rn.t0, rn.started = ts, true
	}
	rn.last = ts
	n := fr.Index + 1
	// A cut fragment cannot be put together; it is decided alone.
	if rn.reasm != nil && !fr.Truncated && !shortOfIPLength(fr.Data) {
		whole, frags, consumed := rn.reasm.Add(fr.Data, n, ts)
		for _, ex := range rn.reasm.Expired() {
			if err := rn.decide(ex.Data, ex.N, ts, fr.Direction, false, nil, true); err != nil {
				return err
			}
		}
		if consumed {
			if whole == nil {
				return nil
			}
			rn.sum.Reassembled++
			rn.sum.Fragments += len(frags)
			return rn.decide(whole, n, ts, fr.Direction, false, frags, false)
		}
	}
	return rn.decide(fr.Data, n, ts, fr.Direction, fr.Truncated || shortOfIPLength(fr.Data), nil, false)
}

// decide runs one packet (frame n, or a datagram reassembled from frags,
// or a fragment decided alone) through the pipeline and hands it to each.
func (rn *runState) decide(data []byte, n int, ts int64, dir capture.Direction, cut bool, frags []int, alone bool) error {
	src, dst := netip.Addr{}, netip.Addr{}
	if rn.dec.DecodeHeaders(data, &rn.hdr) == nil {
		src, dst = rn.hdr.Src, rn.hdr.Dst
	}
	hook := rn.o.HookFor(dir, src, dst)
	res := rn.w.Process(data, pipeline.Meta{Hook: hook, InIf: rn.o.InIf, OutIf: rn.o.OutIf, Now: ts - rn.t0 + 1, Cut: cut})
	rn.sum.Decided++
	if cut && res.DecodeErr == nil {
		rn.sum.Cut++
	}
	if alone {
		rn.sum.Unreassembled++
	}
	return rn.each(&Packet{N: n, Hook: hook, Result: res, Pkt: rn.w.Packet(), Size: len(data), Cut: cut && res.DecodeErr == nil,
		Fragments: len(frags), FragmentFrames: frags, Unreassembled: alone})
}

// shortOfIPLength reports a packet shorter than its IP header says. The
// kernel drops such a packet before any hook (ip_rcv, ipv6_rcv), so in a
// capture it is a copy cut short whose record says otherwise (some writers
// store the cut length as the original length): it is decided from its
// headers, like a frame the record says was cut.
func shortOfIPLength(b []byte) bool {
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		return int(binary.BigEndian.Uint16(b[2:4])) > len(b)
	case len(b) >= 40 && b[0]>>4 == 6:
		// A jumbogram (payload length 0) claims nothing here.
		return 40+int(binary.BigEndian.Uint16(b[4:6])) > len(b)
	}
	return false
}
