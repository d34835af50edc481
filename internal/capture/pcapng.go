package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// ngSource reads pcapng. It is written here rather than using gopacket's
// pcapgo.NgReader (v1.1.19) because that reader cannot be fed untrusted
// files: it keeps link types in a uint8 (SLL2 becomes 20), divides by zero
// (a panic) on a binary if_tsresol of 2^64 or more, reads an if_tsoffset
// shorter than 8 bytes past its end, and sizes its packet buffer from the
// interface's snap length, so a 60-byte file can make it allocate 4 GiB.
// Here every length is checked against the block it sits in, and a block is
// bounded by maxBlock.
type ngSource struct {
	r      *bufio.Reader
	bo     binary.ByteOrder
	ifaces []ngIface
	hdr    [12]byte
	buf    []byte
}

// ngIface is what an interface description block says about its frames.
type ngIface struct {
	link    uint32
	snaplen uint32
	units   uint64 // timestamp units per second (if_tsresol)
	offset  int64  // seconds added to every timestamp (if_tsoffset)
}

const (
	ngSectionHeader = 0x0a0d0d0a
	ngInterface     = 0x00000001
	ngPacket        = 0x00000002 // obsolete, still written by old tools
	ngSimplePacket  = 0x00000003
	ngEnhanced      = 0x00000006
	ngByteOrder     = 0x1a2b3c4d

	optEnd      = 0
	optTSResol  = 9
	optTSOffset = 14

	// maxBlock is the largest block accepted: a MaxFrame packet plus room
	// for its header and options.
	maxBlock = MaxFrame + 64<<10
	// maxInterfaces bounds the interface table a section can build.
	maxInterfaces = 1 << 16
)

var errNgShort = errors.New("block too short for its fields")

func newNgSource(br *bufio.Reader) (*ngSource, error) {
	s := &ngSource{r: br}
	// Read the first section header now, so Open rejects a broken file.
	typ, body, err := s.block()
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng section header: %w", noEOF(err))
	}
	if typ != ngSectionHeader {
		return nil, fmt.Errorf("capture: pcapng starts with block type %#x", typ)
	}
	if err := s.section(body); err != nil {
		return nil, err
	}
	return s, nil
}

// block reads one block and returns its type and body (without the type,
// length and trailing length, and for a section header without the
// byte-order magic). The body aliases s.buf. io.EOF means the file ended
// cleanly between blocks.
func (s *ngSource) block() (uint32, []byte, error) {
	if _, err := io.ReadFull(s.r, s.hdr[:8]); err != nil {
		return 0, nil, err
	}
	consumed := 8
	if binary.LittleEndian.Uint32(s.hdr[:4]) == ngSectionHeader {
		// The byte-order magic after the length decides how to read the
		// whole section, this block's length included.
		if _, err := io.ReadFull(s.r, s.hdr[8:12]); err != nil {
			return 0, nil, noEOF(err)
		}
		switch {
		case binary.LittleEndian.Uint32(s.hdr[8:12]) == ngByteOrder:
			s.bo = binary.LittleEndian
		case binary.BigEndian.Uint32(s.hdr[8:12]) == ngByteOrder:
			s.bo = binary.BigEndian
		default:
			return 0, nil, errors.New("pcapng section header: bad byte-order magic")
		}
		consumed = 12
	} else if s.bo == nil {
		return 0, nil, errors.New("pcapng: block before the first section header")
	}
	typ, length := s.bo.Uint32(s.hdr[:4]), s.bo.Uint32(s.hdr[4:8])
	if length%4 != 0 || length < uint32(consumed)+4+4 || length > maxBlock {
		return 0, nil, fmt.Errorf("pcapng block type %#x: bad length %d", typ, length)
	}
	rest := int(length) - consumed
	if cap(s.buf) < rest {
		s.buf = make([]byte, rest)
	}
	b := s.buf[:rest]
	if _, err := io.ReadFull(s.r, b); err != nil {
		return 0, nil, noEOF(err)
	}
	if trailer := s.bo.Uint32(b[rest-4:]); trailer != length {
		return 0, nil, fmt.Errorf("pcapng block type %#x: length %d, trailing length %d", typ, length, trailer)
	}
	return typ, b[:rest-4], nil
}

func (s *ngSource) next() (rawRecord, error) {
	for {
		typ, body, err := s.block()
		if err != nil {
			return rawRecord{}, err
		}
		switch typ {
		case ngSectionHeader:
			if err := s.section(body); err != nil {
				return rawRecord{}, err
			}
		case ngInterface:
			if err := s.iface(body); err != nil {
				return rawRecord{}, err
			}
		case ngEnhanced, ngPacket:
			if len(body) < 20 {
				return rawRecord{}, fmt.Errorf("pcapng packet block: %w", errNgShort)
			}
			var id int
			if typ == ngEnhanced {
				id = int(s.bo.Uint32(body[0:4]))
			} else {
				id = int(s.bo.Uint16(body[0:2]))
			}
			if id >= len(s.ifaces) || id < 0 {
				return rawRecord{}, fmt.Errorf("pcapng packet block: interface %d of %d", id, len(s.ifaces))
			}
			ifc := &s.ifaces[id]
			ts := uint64(s.bo.Uint32(body[4:8]))<<32 | uint64(s.bo.Uint32(body[8:12]))
			capLen, origLen := s.bo.Uint32(body[12:16]), s.bo.Uint32(body[16:20])
			if uint64(capLen) > uint64(len(body)-20) {
				// The block's own length is whole (block() checked it), so
				// the next block is still found: skip this one.
				return rawRecord{link: ifc.link, bad: fmt.Sprintf("pcapng captured length %d exceeds its block", capLen)}, nil
			}
			rec := rawRecord{data: body[20 : 20+capLen], link: ifc.link, ts: ifc.time(ts), origLen: int(origLen)}
			if capLen > origLen {
				rec.bad = fmt.Sprintf("captured length %d exceeds original length %d", capLen, origLen)
			}
			if typ == ngEnhanced {
				padded := (uint64(capLen) + 3) &^ 3
				if 20+padded <= uint64(len(body)) {
					rec.dir = s.epbDirection(body[20+padded:])
				}
			}
			return rec, nil
		case ngSimplePacket:
			if len(body) < 4 || len(s.ifaces) == 0 {
				return rawRecord{}, fmt.Errorf("pcapng simple packet block: %w or no interface", errNgShort)
			}
			ifc := &s.ifaces[0]
			origLen := s.bo.Uint32(body[0:4])
			// The block does not say how much was captured: the original
			// length cut at the snap length and the block's end.
			n := min(uint64(origLen), uint64(len(body)-4))
			if ifc.snaplen != 0 {
				n = min(n, uint64(ifc.snaplen))
			}
			return rawRecord{data: body[4 : 4+n], link: ifc.link, origLen: int(origLen)}, nil
		}
		// Statistics, name resolution, secrets and custom blocks carry no
		// packets.
	}
}

// optEPBFlags is the enhanced packet block's epb_flags option: its two
// low bits are the direction (01 inbound, 10 outbound).
const optEPBFlags = 2

// epbDirection reads the direction from an enhanced packet block's options.
func (s *ngSource) epbDirection(opts []byte) Direction {
	for len(opts) >= 4 {
		code, l := s.bo.Uint16(opts[0:2]), int(s.bo.Uint16(opts[2:4]))
		padded := (l + 3) &^ 3
		if code == optEnd || 4+padded > len(opts) {
			return DirUnknown
		}
		if code == optEPBFlags && l == 4 {
			switch s.bo.Uint32(opts[4:8]) & 3 {
			case 1:
				return DirIn
			case 2:
				return DirOut
			}
			return DirUnknown
		}
		opts = opts[4+padded:]
	}
	return DirUnknown
}

// section starts a new section: interface numbers restart.
func (s *ngSource) section(body []byte) error {
	if len(body) < 12 {
		return fmt.Errorf("capture: pcapng section header: %w", errNgShort)
	}
	if major := s.bo.Uint16(body[0:2]); major != 1 {
		return fmt.Errorf("capture: pcapng version %d.%d not supported", major, s.bo.Uint16(body[2:4]))
	}
	s.ifaces = s.ifaces[:0]
	return nil
}

// iface records an interface description block.
func (s *ngSource) iface(body []byte) error {
	if len(body) < 8 {
		return fmt.Errorf("pcapng interface block: %w", errNgShort)
	}
	if len(s.ifaces) >= maxInterfaces {
		return fmt.Errorf("pcapng: more than %d interfaces in a section", maxInterfaces)
	}
	ifc := ngIface{
		link:    uint32(s.bo.Uint16(body[0:2])),
		snaplen: s.bo.Uint32(body[4:8]),
		units:   1e6, // microseconds unless if_tsresol says otherwise
	}
	for opts := body[8:]; len(opts) >= 4; {
		code, l := s.bo.Uint16(opts[0:2]), int(s.bo.Uint16(opts[2:4]))
		if code == optEnd {
			break
		}
		padded := (l + 3) &^ 3
		if 4+padded > len(opts) {
			return fmt.Errorf("pcapng interface block: option %d of %d bytes runs past the block", code, l)
		}
		v := opts[4 : 4+l]
		switch code {
		case optTSResol:
			if l != 1 {
				return fmt.Errorf("pcapng interface block: if_tsresol of %d bytes", l)
			}
			units, ok := tsUnits(v[0])
			if !ok {
				return fmt.Errorf("pcapng interface block: unsupported if_tsresol %#x", v[0])
			}
			ifc.units = units
		case optTSOffset:
			if l != 8 {
				return fmt.Errorf("pcapng interface block: if_tsoffset of %d bytes", l)
			}
			ifc.offset = int64(s.bo.Uint64(v))
		}
		opts = opts[4+padded:]
	}
	s.ifaces = append(s.ifaces, ifc)
	return nil
}

// tsUnits decodes if_tsresol: a power of ten, or of two when the top bit is
// set, refused when the units per second would not fit 64 bits.
func tsUnits(r byte) (uint64, bool) {
	if r&0x80 != 0 {
		exp := r & 0x7f
		if exp > 63 {
			return 0, false
		}
		return 1 << exp, true
	}
	if r > 19 {
		return 0, false
	}
	u := uint64(1)
	for range r {
		u *= 10
	}
	return u, true
}

// time converts a timestamp in the interface's units to a time.
func (i *ngIface) time(ts uint64) time.Time {
	secs, frac := ts/i.units, ts%i.units
	// frac*1e9 can overflow 64 bits at fine resolutions; since frac < units
	// the 128-bit quotient fits, so Div64 cannot panic.
	hi, lo := bits.Mul64(frac, 1e9)
	nanos, _ := bits.Div64(hi, lo, i.units)
	return time.Unix(int64(secs)+i.offset, int64(nanos)).UTC()
}
