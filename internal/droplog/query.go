package droplog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
)

// jsonEvent is the JSON schema (the package comment), for reading events
// back. Its omitempty tags are those AppendJSON writes by, so the tests can
// use it as the encoding/json oracle AppendJSON's output must match; they
// do not change what decodes.
type jsonEvent struct {
	Time     string  `json:"time"`
	Rule     string  `json:"rule"`
	Verdict  string  `json:"verdict"`
	Event    string  `json:"event"`
	Hook     string  `json:"hook"`
	Family   string  `json:"family"`
	Proto    string  `json:"proto"`
	Src      string  `json:"src,omitempty"`
	Dst      string  `json:"dst,omitempty"`
	Sport    uint16  `json:"sport,omitempty"`
	Dport    uint16  `json:"dport,omitempty"`
	Length   int     `json:"length"`
	In       string  `json:"in,omitempty"`
	Out      string  `json:"out,omitempty"`
	TCPFlags *string `json:"tcp_flags,omitempty"`
	ICMPType *uint8  `json:"icmp_type,omitempty"`
	ICMPCode *uint8  `json:"icmp_code,omitempty"`
	Prefix   string  `json:"prefix"`
	Mark     uint32  `json:"mark"`
	UID      *uint32 `json:"uid,omitempty"`
	GID      *uint32 `json:"gid,omitempty"`
	Cgroup   *string `json:"cgroup,omitempty"`
}

// ParseEvent reads one line of the JSON log (the schema in the package
// comment) into e, the inverse of AppendJSON: what AppendJSON wrote parses
// back to the same event, except RuleID, which the log does not carry, and
// L4, which is only visible for TCP and ICMP. Lines come from files anyone
// with write access to the log directory could have edited, so every field
// is checked.
func ParseEvent(line []byte, e *Event) error {
	var w jsonEvent
	if err := json.Unmarshal(line, &w); err != nil {
		return fmt.Errorf("droplog: parse event: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return fmt.Errorf("droplog: parse event: time: %w", err)
	}
	*e = Event{Time: t, Rule: w.Rule, Verdict: w.Verdict, Event: w.Event, Hook: w.Hook,
		SrcPort: w.Sport, DstPort: w.Dport, Length: w.Length, In: w.In, Out: w.Out, Prefix: w.Prefix, Mark: w.Mark}
	switch w.Family {
	case "ipv4":
		e.Family = packet.IPv4
	case "ipv6":
		e.Family = packet.IPv6
	}
	if e.Proto, err = parseProto(w.Proto); err != nil {
		return err
	}
	if w.UID != nil {
		e.HasUID, e.UID = true, *w.UID
	}
	if w.GID != nil {
		e.HasGID, e.GID = true, *w.GID
	}
	if w.Cgroup != nil {
		cg, ok := strings.CutPrefix(*w.Cgroup, "/")
		if !ok {
			return fmt.Errorf("droplog: parse event: cgroup %q does not start with /", *w.Cgroup)
		}
		e.HasCgroup, e.Cgroup = true, cg
	}
	for _, a := range []struct {
		s   string
		dst *netip.Addr
	}{{w.Src, &e.Src}, {w.Dst, &e.Dst}} {
		if a.s == "" {
			continue
		}
		if *a.dst, err = netip.ParseAddr(a.s); err != nil {
			return fmt.Errorf("droplog: parse event: %w", err)
		}
	}
	if w.TCPFlags != nil && e.Proto == packet.ProtoTCP {
		e.L4 = true
		if e.TCPFlags, err = parseTCPFlags(*w.TCPFlags); err != nil {
			return err
		}
	}
	if w.ICMPType != nil && (e.Proto == packet.ProtoICMP || e.Proto == packet.ProtoICMPv6) {
		e.L4 = true
		e.ICMPType = *w.ICMPType
		if w.ICMPCode != nil {
			e.ICMPCode = *w.ICMPCode
		}
	}
	return nil
}

func parseProto(s string) (uint8, error) {
	if p, ok := packet.ProtoByName(s); ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("droplog: parse event: proto %q", s)
	}
	return uint8(n), nil
}

func parseTCPFlags(s string) (uint8, error) {
	var f uint8
	for i := 0; i < len(s); i++ {
		ok := false
		for _, l := range tcpFlagLetters {
			if s[i] == l.letter {
				f |= l.bit
				ok = true
			}
		}
		if !ok {
			return 0, fmt.Errorf("droplog: parse event: tcp flag %q", s[i])
		}
	}
	return f, nil
}

// Filter selects events; a zero field selects everything.
type Filter struct {
	Rule  string    // the deciding rule's name
	Event string    // drop, reject, accept, would_drop, would_reject
	Since time.Time // events at or after this time
	Until time.Time // events before this time
	// Src and Dst hold events whose address is inside one of the prefixes.
	Src, Dst []netip.Prefix
	// Sport and Dport hold events whose port is in one of the ranges; an
	// event without ports (ICMP) never matches a port filter.
	Sport, Dport []PortRange
	// Protos holds events of one of these protocols.
	Protos []uint8
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// Match reports whether e passes the filter.
func (f Filter) Match(e *Event) bool {
	return (f.Rule == "" || e.Rule == f.Rule) &&
		(f.Event == "" || e.Event == f.Event) &&
		(f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Until.IsZero() || e.Time.Before(f.Until)) &&
		inPrefixes(f.Src, e.Src) && inPrefixes(f.Dst, e.Dst) &&
		inPorts(f.Sport, e, e.SrcPort) && inPorts(f.Dport, e, e.DstPort) &&
		(len(f.Protos) == 0 || slices.Contains(f.Protos, e.Proto))
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func inPorts(rs []PortRange, e *Event, port uint16) bool {
	if len(rs) == 0 {
		return true
	}
	switch e.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
	default:
		return false
	}
	for _, r := range rs {
		if r.Lo <= port && port <= r.Hi {
			return true
		}
	}
	return false
}

// ParseProto reads a protocol as events name it (tcp, udp, icmp, icmpv6,
// sctp, gre, esp) or as a number.
func ParseProto(s string) (uint8, error) {
	p, err := parseProto(strings.ToLower(strings.TrimSpace(s)))
	if err != nil {
		return 0, fmt.Errorf("droplog: proto %q: want tcp, udp, icmp, icmpv6, sctp, gre, esp or 0-255", s)
	}
	return p, nil
}

// ParsePrefix reads an address (as a one-address prefix) or a CIDR.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("droplog: %q: want an address or a CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePortRange reads a port (22) or an inclusive range (1024-65535).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	}
	if err1 != nil || err2 != nil || a > b {
		return PortRange{}, fmt.Errorf("droplog: port %q: want a port or a range lo-hi", s)
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

// ParseTime reads a time for --since and --until, relative to now: a
// duration back from now (90s, 30m, 1h, 2d, 1w, 1d12h; d is 24 hours, w 7
// days), an RFC 3339 time (2026-11-27T12:00:00Z, with or without
// fraction), a local date and time without zone (2026-11-27T12:00:00 or
// "2026-11-27 12:00"), or a local date (2026-11-27, its midnight).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, ok := parseLongDuration(s); ok {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("droplog: time %q: want a duration back from now (30m, 2d, 1w) or a time (2026-11-27T12:00:00Z, 2026-11-27)", s)
}

// parseLongDuration is time.ParseDuration with days (d) and weeks (w) in
// front: "2d", "1w2d", "1d12h".
func parseLongDuration(s string) (time.Duration, bool) {
	var total time.Duration
	rest := s
	for _, u := range []struct {
		suffix byte
		d      time.Duration
	}{{'w', 7 * 24 * time.Hour}, {'d', 24 * time.Hour}} {
		i := strings.IndexByte(rest, u.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(rest[:i], 10, 32)
		if err != nil {
			return 0, false
		}
		total += time.Duration(n) * u.d
		rest = rest[i+1:]
	}
	if rest == "" {
		return total, rest != s
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d < 0 {
		return 0, false
	}
	return total + d, true
}

// maxLine bounds one log line: events are a few hundred bytes; a longer
// line is not ours and is skipped rather than buffered without end.
const maxLine = 64 << 10

// Scan calls fn for every event line in r that passes f, with the raw line
// (valid until fn returns) and the parsed event. Lines that do not parse are
// counted and skipped, so one damaged line does not hide the rest. It
// returns the number skipped.
func Scan(r io.Reader, f Filter, fn func(line []byte, e *Event) error) (skipped int, err error) {
	br := bufio.NewReaderSize(r, maxLine)
	var e Event
	for {
		line, rerr := readLine(br)
		if len(line) > 0 {
			if ParseEvent(line, &e) != nil {
				skipped++
			} else if f.Match(&e) {
				if err := fn(line, &e); err != nil {
					return skipped, err
				}
			}
		}
		if rerr == io.EOF {
			return skipped, nil
		}
		if rerr != nil {
			return skipped, fmt.Errorf("droplog: read log: %w", rerr)
		}
	}
}

// readLine returns the next line without its newline; an over-long line
// comes back as one oversized junk line.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		return []byte("\x00"), err
	}
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	return line, err
}

// Follow is Scan on a log file that keeps growing, like `tail -F`: it
// reads path to the end, then every poll reads what was appended, and when
// the file is rotated (replaced by a new file, or truncated) it finishes the
// old one and starts at the top of the new. It returns when ctx is done.
// Only whole lines are passed on: a line still being written waits for its
// newline.
func Follow(ctx context.Context, path string, poll time.Duration, f Filter, fn func(line []byte, e *Event) error) error {
	var (
		file    *os.File
		pending []byte
		e       Event
		buf     = make([]byte, 64<<10)
	)
	defer func() {
		if file != nil {
			file.Close()
		}
	}()
	emit := func(line []byte) error {
		if len(line) == 0 || len(line) > maxLine || ParseEvent(line, &e) != nil || !f.Match(&e) {
			return nil
		}
		return fn(line, &e)
	}
	drain := func() error {
		for {
			n, err := file.Read(buf)
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				if err := emit(pending[:i]); err != nil {
					return err
				}
				pending = pending[i+1:]
			}
			if len(pending) > maxLine {
				pending = pending[:0]
			}
			if err == io.EOF || n == 0 {
				return nil
			}
			if err != nil {
				return fmt.Errorf("droplog: follow: %w", err)
			}
		}
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if file == nil {
			if fh, err := os.Open(path); err == nil {
				file, pending = fh, pending[:0]
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("droplog: follow: %w", err)
			}
		}
		if file != nil {
			if err := drain(); err != nil {
				return err
			}
			if rotated(file, path) {
				// What was appended before the rename is read above; the
				// new file is opened on this same pass.
				file.Close()
				file = nil
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// rotated reports whether path no longer names the open file, or the file
// shrank under us.
func rotated(file *os.File, path string) bool {
	open, err := file.Stat()
	if err != nil {
		return true
	}
	now, err := os.Stat(path)
	if err != nil {
		// Between a rename and the new file's creation: keep reading.
		return false
	}
	if !os.SameFile(open, now) {
		return true
	}
	pos, err := file.Seek(0, io.SeekCurrent)
	return err == nil && pos > now.Size()
}
