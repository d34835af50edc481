package l7

import "bytes"

// StreamLimit bounds what a DNS or HTTP stream reader buffers: one DNS
// message of a TCP stream, or one HTTP request head, plus the segments kept
// ahead of a hole.
const StreamLimit = 16 << 10

// maxChunkLine bounds a chunk-size line with its extensions.
const maxChunkLine = 1 << 10

// DNSReader splits a reassembled DNS-over-TCP stream into its messages. Its
// zero value is ready; it is a value the caller copies to undo a Read.
type DNSReader struct {
	failed bool
}

// Failed reports whether the stream broke: Read reads nothing more.
func (r *DNSReader) Failed() bool { return r.failed }

// Done is NameFailed once Read reads nothing more, else NameUnknown, as
// HTTPReader.Done is (a DNS stream is never NameAbsent).
func (r *DNSReader) Done() NameState {
	if r.failed {
		return NameFailed
	}
	return NameUnknown
}

// Read consumes every whole message at the front of s and appends each
// (without its length prefix, aliasing s until s changes) to msgs. The state
// is NameFound when it appended any, NamePending when the next message is
// not whole yet, NameFailed once the stream broke (a zero length, or a
// message longer than the stream's bound): from then on it reads nothing.
func (r *DNSReader) Read(s *Stream, msgs [][]byte) ([][]byte, NameState) {
	n0 := len(msgs)
	for !r.failed {
		msg, n, err := DNSTCPMessage(s.Bytes())
		if err == ErrIncomplete {
			if b := s.Bytes(); len(b) >= 2 && 2+int(b[0])<<8|int(b[1]) > s.limit {
				r.failed = true
			}
			break
		}
		if err != nil {
			r.failed = true
			break
		}
		msgs = append(msgs, msg)
		s.Consume(n)
	}
	switch {
	case len(msgs) > n0:
		return msgs, NameFound
	case r.failed:
		return msgs, NameFailed
	}
	return msgs, NamePending
}

// HTTPReader splits a reassembled HTTP/1.x request stream into its request
// heads, skipping their bodies (Content-Length or chunked). Its zero value
// is ready; it is a value the caller copies to undo a Read.
type HTTPReader struct {
	// body is what is left to skip of the current body or chunk.
	body  int64
	chunk chunkState
	done  NameState // NameAbsent or NameFailed once the stream is not read
	seen  bool      // a request head was read
}

type chunkState uint8

const (
	chunkNone  chunkState = iota // not in a chunked body
	chunkSize                    // before a chunk-size line
	chunkData                    // skipping chunk data (body left)
	chunkCRLF                    // before the CRLF after chunk data
	chunkTrail                   // in the trailer section
)

// Done is NameAbsent or NameFailed once Read reads nothing more, else
// NameUnknown.
func (r *HTTPReader) Done() NameState { return r.done }

// Read consumes every whole request head at the front of s, and the body
// bytes that follow each, and appends each head's hosts (see HTTPRequest;
// a head without any appends an empty name, which no pattern matches) to
// hosts. The state is NameFound when it appended any; NamePending when the
// next head is not whole yet, or the bytes so far were body; NameAbsent
// when the stream is not HTTP/1.x; NameFailed when it broke.
func (r *HTTPReader) Read(s *Stream, hosts [][]byte) ([][]byte, NameState) {
	n0 := len(hosts)
	for r.done == NameUnknown {
		b := s.Bytes()
		if r.body > 0 {
			k := int(min(r.body, int64(len(b))))
			s.Consume(k)
			r.body -= int64(k)
			if r.body > 0 {
				break
			}
			if r.chunk == chunkData {
				r.chunk = chunkCRLF
			}
			continue
		}
		if r.chunk != chunkNone {
			if !r.readChunked(s) {
				break
			}
			continue
		}
		if len(b) == 0 {
			break
		}
		req, n, err := ParseHTTPRequest(b)
		switch err {
		case nil:
		case ErrIncomplete:
			return hosts, pendingOrFound(len(hosts) > n0)
		case ErrNotHTTP:
			if !r.seen {
				r.done = NameAbsent
			} else {
				r.done = NameFailed
			}
			continue
		default:
			r.done = NameFailed
			continue
		}
		r.seen = true
		if req.NHosts == 0 {
			hosts = append(hosts, nil)
		}
		hosts = append(hosts, req.Hosts[:req.NHosts]...)
		s.Consume(n)
		r.body = req.ContentLength
		if req.Chunked {
			r.chunk = chunkSize
		}
	}
	if len(hosts) > n0 {
		return hosts, NameFound
	}
	if r.done != NameUnknown {
		return hosts, r.done
	}
	return hosts, NamePending
}

func pendingOrFound(found bool) NameState {
	if found {
		return NameFound
	}
	return NamePending
}

// readChunked advances through the chunk framing at the front of s by one
// step; false when it needs more bytes.
func (r *HTTPReader) readChunked(s *Stream) bool {
	b := s.Bytes()
	line, rest, ok := cutLine(b)
	if !ok {
		if len(b) > maxChunkLine {
			r.done = NameFailed
			return true
		}
		return false
	}
	s.Consume(len(b) - len(rest))
	switch r.chunk {
	case chunkCRLF:
		if len(line) != 0 {
			r.done = NameFailed
		}
		r.chunk = chunkSize
	case chunkSize:
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseNumber(bytes.TrimRight(line, " \t"), 16, 15)
		switch {
		case !ok:
			r.done = NameFailed
		case size == 0:
			r.chunk = chunkTrail
		default:
			r.body, r.chunk = size, chunkData
		}
	case chunkTrail:
		if len(line) == 0 {
			r.chunk = chunkNone
		}
	}
	return true
}
