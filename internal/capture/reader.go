package capture

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// MaxFrame is the largest frame the reader accepts, tcpdump's MAXIMUM_SNAPLEN.
// It bounds the memory a hostile capture can make the reader allocate.
const MaxFrame = 262144

// Frame is one IP packet from a capture.
type Frame struct {
	// Data starts at the IP header. It aliases the Reader's buffer and is
	// valid until the next call to Next.
	Data []byte
	// Timestamp is the capture time (zero for pcapng simple packet blocks,
	// which carry none).
	Timestamp time.Time
	// Index is the frame's position in the capture counting from 0, skipped
	// frames included, so Index+1 is the frame number Wireshark shows.
	Index int
	// Truncated is set when the capture kept fewer bytes than the frame had
	// on the wire (a snap length); the packet will not decode whole.
	Truncated bool
	// Direction is which way the frame went, where the capture records it
	// (pcapng's epb_flags, a Linux cooked header's packet type).
	Direction Direction
}

// rawRecord is one frame as a capture format stores it.
type rawRecord struct {
	data    []byte
	link    uint32
	ts      time.Time
	origLen int
	dir     Direction
	// bad says why the record cannot be trusted ("" when it can); the
	// reader skips it and reads on, as tcpdump does.
	bad string
}

// source yields the frames of one capture format.
type source interface {
	// next returns the next record; io.EOF at the end.
	next() (rawRecord, error)
}

// Reader reads IP packets from a pcap or pcapng capture. It is not safe for
// concurrent use.
type Reader struct {
	src     source
	index   int
	skipped int
	why     map[string]int
	// Warn, if set, is told of every record skipped as bad (frame number
	// as Wireshark counts, and why), for the caller to print.
	Warn func(frame int, msg string)
}

const (
	pcapMagicMicro = 0xa1b2c3d4
	pcapMagicNano  = 0xa1b23c4d
	pcapngMagic    = 0x0a0d0d0a // section header block type, a palindrome
	gzipMagic      = 0x1f8b
)

// Open detects the format of the capture in r (pcap with either timestamp
// precision and byte order, or pcapng; either may be gzip-compressed) and
// returns a Reader over it. For classic pcap an unsupported link type is an
// error here; pcapng names a link type per interface, so frames of an
// unsupported one are skipped instead.
func Open(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("capture: read file header: %w", noEOF(err))
	}
	if binary.BigEndian.Uint16(head) == gzipMagic {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("capture: open gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 64<<10)
		if head, err = br.Peek(4); err != nil {
			return nil, fmt.Errorf("capture: read file header: %w", noEOF(err))
		}
	}
	magicLE, magicBE := binary.LittleEndian.Uint32(head), binary.BigEndian.Uint32(head)
	switch {
	case magicLE == pcapngMagic:
		src, err := newNgSource(br)
		if err != nil {
			return nil, err
		}
		return &Reader{src: src, why: map[string]int{}}, nil
	case magicLE == pcapMagicMicro || magicLE == pcapMagicNano || magicBE == pcapMagicMicro || magicBE == pcapMagicNano:
		src, err := newPcapSource(br)
		if err != nil {
			return nil, err
		}
		return &Reader{src: src, why: map[string]int{}}, nil
	}
	return nil, fmt.Errorf("capture: not a pcap or pcapng file (magic %08x)", magicBE)
}

// ReadAll reads the frames left up to the end of the capture, each one's
// Data copied (Next reuses its buffer), and returns them with the error
// that stopped it before the end, if any. It is for captures small enough
// to hold whole: tests, and tools that compare captures.
func (r *Reader) ReadAll() ([]Frame, error) {
	var out []Frame
	for {
		f, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		f.Data = bytes.Clone(f.Data)
		out = append(out, f)
	}
}

// Next returns the next frame that carries IP, skipping (and counting) the
// others. It returns io.EOF after the last frame.
func (r *Reader) Next() (Frame, error) {
	for {
		rec, err := r.src.next()
		if err != nil {
			if err == io.EOF {
				return Frame{}, io.EOF
			}
			return Frame{}, fmt.Errorf("capture: frame %d: %w", r.index+1, noEOF(err))
		}
		i := r.index
		r.index++
		if rec.bad != "" {
			r.skip(SkipBadRecord)
			if r.Warn != nil {
				r.Warn(i+1, rec.bad)
			}
			continue
		}
		ip, why := ipPayload(rec.link, rec.data)
		if ip == nil {
			if why == SkipLinkType {
				why = fmt.Sprintf("%s %d", SkipLinkType, rec.link)
			}
			r.skip(why)
			continue
		}
		dir := rec.dir
		if dir == DirUnknown {
			dir = linkDirection(rec.link, rec.data)
		}
		return Frame{Data: ip, Timestamp: rec.ts, Index: i, Truncated: rec.origLen > len(rec.data), Direction: dir}, nil
	}
}

func (r *Reader) skip(why string) {
	if why == "" {
		why = skipUnknownCause
	}
	r.skipped++
	r.why[why]++
}

// Skipped returns how many frames so far carried no IP packet (ARP, LLDP,
// other link types, frames too short for their link header) or were bad
// records.
func (r *Reader) Skipped() int { return r.skipped }

// SkippedBy returns the skipped frames so far counted by reason (the Skip
// constants; an unsupported link type names its number).
func (r *Reader) SkippedBy() map[string]int {
	out := make(map[string]int, len(r.why))
	for k, v := range r.why {
		out[k] = v
	}
	return out
}

// noEOF turns an EOF met inside a structure into io.ErrUnexpectedEOF, so a
// file cut short is not mistaken for a clean end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// pcapSource reads classic pcap. It reads records itself rather than
// through gopacket's pcapgo, which stops at a record whose captured length
// exceeds its original length; tcpdump reads on, and so does this.
type pcapSource struct {
	r    *bufio.Reader
	bo   binary.ByteOrder
	nano bool
	link uint32
	hdr  [16]byte
	buf  []byte
}

func newPcapSource(br *bufio.Reader) (*pcapSource, error) {
	var hdr [24]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("capture: read pcap header: %w", noEOF(err))
	}
	s := &pcapSource{r: br, bo: binary.LittleEndian}
	m := binary.LittleEndian.Uint32(hdr[:4])
	if bm := binary.BigEndian.Uint32(hdr[:4]); bm == pcapMagicMicro || bm == pcapMagicNano {
		s.bo, m = binary.BigEndian, bm
	}
	s.nano = m == pcapMagicNano
	// The upper bits hold the FCS length and reserved flags. Like tcpdump,
	// ignore the header's snap length (writers do not always honour it)
	// and apply our own bound instead.
	s.link = s.bo.Uint32(hdr[20:24]) & 0xffff
	if !supported(s.link) {
		return nil, fmt.Errorf("capture: unsupported link type %d", s.link)
	}
	return s, nil
}

func (s *pcapSource) next() (rawRecord, error) {
	if _, err := io.ReadFull(s.r, s.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return rawRecord{}, err
		}
		return rawRecord{}, err // io.EOF: a clean end between records
	}
	sec, frac := s.bo.Uint32(s.hdr[0:4]), s.bo.Uint32(s.hdr[4:8])
	capLen, origLen := s.bo.Uint32(s.hdr[8:12]), s.bo.Uint32(s.hdr[12:16])
	if capLen > MaxFrame {
		// Past this the record header itself is suspect, and skipping
		// capLen bytes would read garbage as records: stop, as libpcap does.
		return rawRecord{}, fmt.Errorf("captured length %d exceeds %d", capLen, MaxFrame)
	}
	if cap(s.buf) < int(capLen) {
		s.buf = make([]byte, capLen)
	}
	data := s.buf[:capLen]
	if _, err := io.ReadFull(s.r, data); err != nil {
		return rawRecord{}, noEOF(err)
	}
	ns := int64(frac) * 1000
	if s.nano {
		ns = int64(frac)
	}
	rec := rawRecord{data: data, link: s.link, ts: time.Unix(int64(sec), ns).UTC(), origLen: int(origLen)}
	if capLen > origLen {
		rec.bad = fmt.Sprintf("captured length %d exceeds original length %d", capLen, origLen)
	}
	return rec, nil
}
