package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/gopacket/pcapgo"
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
}

// source yields the frames of one capture format.
type source interface {
	// next returns the next frame, its link type and timestamp, and the
	// frame's original length; io.EOF at the end.
	next() (data []byte, link uint32, ts time.Time, origLen int, err error)
}

// Reader reads IP packets from a pcap or pcapng capture. It is not safe for
// concurrent use.
type Reader struct {
	src     source
	index   int
	skipped int
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
		return &Reader{src: src}, nil
	case magicLE == pcapMagicMicro || magicLE == pcapMagicNano || magicBE == pcapMagicMicro || magicBE == pcapMagicNano:
		src, err := newPcapSource(br)
		if err != nil {
			return nil, err
		}
		return &Reader{src: src}, nil
	}
	return nil, fmt.Errorf("capture: not a pcap or pcapng file (magic %08x)", magicBE)
}

// Next returns the next frame that carries IP, skipping (and counting) the
// others. It returns io.EOF after the last frame.
func (r *Reader) Next() (Frame, error) {
	for {
		data, link, ts, origLen, err := r.src.next()
		if err != nil {
			if err == io.EOF {
				return Frame{}, io.EOF
			}
			return Frame{}, fmt.Errorf("capture: frame %d: %w", r.index+1, noEOF(err))
		}
		i := r.index
		r.index++
		ip := ipPayload(link, data)
		if ip == nil {
			r.skipped++
			continue
		}
		return Frame{Data: ip, Timestamp: ts, Index: i, Truncated: origLen > len(data)}, nil
	}
}

// Skipped returns how many frames so far carried no IP packet (ARP, LLDP,
// other link types, frames too short for their link header).
func (r *Reader) Skipped() int { return r.skipped }

// noEOF turns an EOF met inside a structure into io.ErrUnexpectedEOF, so a
// file cut short is not mistaken for a clean end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// pcapSource reads classic pcap through gopacket's pcapgo.
type pcapSource struct {
	r    *pcapgo.Reader
	link uint32
}

func newPcapSource(br *bufio.Reader) (*pcapSource, error) {
	// pcapgo parses the header too, but keeps the link type in gopacket's
	// uint8 LinkType, which turns SLL2 (276) into 20: read it here.
	hdr, err := br.Peek(24)
	if err != nil {
		return nil, fmt.Errorf("capture: read pcap header: %w", noEOF(err))
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if m := binary.BigEndian.Uint32(hdr); m == pcapMagicMicro || m == pcapMagicNano {
		bo = binary.BigEndian
	}
	// The upper bits hold the FCS length and reserved flags.
	link := bo.Uint32(hdr[20:24]) & 0xffff
	if !supported(link) {
		return nil, fmt.Errorf("capture: unsupported link type %d", link)
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("capture: read pcap header: %w", err)
	}
	// Like tcpdump, ignore the header's snap length (writers do not always
	// honour it) and apply our own bound instead.
	pr.SetSnaplen(MaxFrame)
	return &pcapSource{r: pr, link: link}, nil
}

func (s *pcapSource) next() ([]byte, uint32, time.Time, int, error) {
	data, ci, err := s.r.ZeroCopyReadPacketData()
	if err == io.EOF && ci.CaptureLength > 0 {
		// A record header with no data after it: the file was cut, which
		// io.ReadFull reports as a plain EOF when no byte arrived.
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, 0, time.Time{}, 0, err
	}
	return data, s.link, ci.Timestamp, ci.Length, nil
}
