package l7

import (
	"bytes"
	"errors"
)

var (
	// ErrNotHTTP reports a stream that does not start with an HTTP/1.x
	// request line (a TLS hello, an HTTP/2 preface, anything else).
	ErrNotHTTP = errors.New("l7: http: not an HTTP/1.x request")
	// ErrHeadTooLong reports a request head longer than HTTPHeadLimit.
	ErrHeadTooLong = errors.New("l7: http: request head too long")
	// ErrBadHTTP reports a request head no server would accept as it
	// stands: conflicting lengths, too many Host headers, a bad chunk size.
	ErrBadHTTP = errors.New("l7: http: malformed request")
)

// HTTPHeadLimit bounds a request head (request line and header fields): a
// longer head is refused by common servers too (nginx's large buffers are 8
// KiB a line, Go's net/http reads 1 MiB but real heads are far below this).
const HTTPHeadLimit = 16 << 10

// maxHTTPHosts: one Host header, a duplicate (which servers should refuse
// but some take the first or the last of), and an absolute-form target.
const maxHTTPHosts = 3

// HTTPRequest is what ParseHTTPRequest reads of one request head.
type HTTPRequest struct {
	// Hosts are the names the request addresses, as sent (case kept),
	// without port and surrounding whitespace: every Host header, and the
	// host of an absolute-form target (RFC 9112 section 3.2.2: a server
	// takes that over the Host header). Hosts[:NHosts] are valid.
	Hosts  [maxHTTPHosts][]byte
	NHosts int
	// ContentLength is the body length (0 without one); Chunked is set for
	// a chunked body, whose length the chunks give.
	ContentLength int64
	Chunked       bool
}

// ParseHTTPRequest parses the HTTP/1.x request head at the start of b and
// returns it with n, the bytes the head spans up to and including its empty
// line. Lines may end in CRLF or a bare LF (servers accept both). Errors:
// ErrIncomplete (the head goes on beyond b), ErrNotHTTP, ErrHeadTooLong,
// ErrBadHTTP. The slices in req alias b.
func ParseHTTPRequest(b []byte) (req HTTPRequest, n int, err error) {
	line, rest, ok := cutLine(b)
	if err := requestLinePrefix(line); err != nil {
		return req, 0, err
	}
	if !ok {
		return req, 0, incompleteHead(b)
	}
	if err := requestLine(&req, line); err != nil {
		return req, 0, err
	}
	n = len(b) - len(rest)
	cl := int64(-1)
	for {
		line, rest, ok = cutLine(b[n:])
		if !ok {
			return HTTPRequest{}, 0, incompleteHead(b)
		}
		n = len(b) - len(rest)
		if n > HTTPHeadLimit {
			return HTTPRequest{}, 0, ErrHeadTooLong
		}
		if len(line) == 0 {
			break
		}
		name, value, found := bytes.Cut(line, []byte{':'})
		if !found {
			continue // servers refuse such a line; it names nothing here
		}
		name = bytes.TrimRight(name, " \t")
		value = bytes.Trim(value, " \t")
		switch {
		case asciiEqualFold(name, "host"):
			if req.NHosts == maxHTTPHosts {
				return HTTPRequest{}, 0, ErrBadHTTP
			}
			req.Hosts[req.NHosts] = stripPort(value)
			req.NHosts++
		case asciiEqualFold(name, "content-length"):
			v, ok := parseNumber(value, 10, 18)
			if !ok || cl >= 0 && v != cl {
				return HTTPRequest{}, 0, ErrBadHTTP
			}
			cl = v
		case asciiEqualFold(name, "transfer-encoding"):
			// RFC 9112 section 6.3: chunked, when present, is last, and
			// then decides the length whatever Content-Length says.
			last := value
			if i := bytes.LastIndexByte(value, ','); i >= 0 {
				last = bytes.Trim(value[i+1:], " \t")
			}
			req.Chunked = asciiEqualFold(last, "chunked")
		}
	}
	if cl > 0 && !req.Chunked {
		req.ContentLength = cl
	}
	return req, n, nil
}

func incompleteHead(b []byte) error {
	if len(b) > HTTPHeadLimit {
		return ErrHeadTooLong
	}
	return ErrIncomplete
}

// cutLine splits off the first line of b, without its LF or CRLF.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

// requestLinePrefix rejects, from its first bytes, a line that cannot start
// a request: the method is a token (RFC 9110 section 9.1) followed by a
// space. A stream of another protocol fails on its first byte.
func requestLinePrefix(line []byte) error {
	for i, c := range line {
		if c == ' ' && i > 0 {
			return nil
		}
		if !isTokenChar(c) || i >= 32 {
			return ErrNotHTTP
		}
	}
	return nil
}

// requestLine reads "METHOD SP target SP HTTP/1.x".
func requestLine(req *HTTPRequest, line []byte) error {
	_, rest, _ := bytes.Cut(line, []byte{' '})
	target, version, ok := bytes.Cut(rest, []byte{' '})
	if !ok || !bytes.HasPrefix(version, []byte("HTTP/1.")) {
		return ErrNotHTTP
	}
	if host, ok := absoluteHost(target); ok {
		req.Hosts[0] = host
		req.NHosts = 1
	}
	return nil
}

// absoluteHost returns the host of an absolute-form target
// ("http://user@host:port/path").
func absoluteHost(target []byte) ([]byte, bool) {
	i := bytes.Index(target, []byte("://"))
	if i <= 0 || i > 8 || !bytes.EqualFold(target[:i], []byte("http")) && !bytes.EqualFold(target[:i], []byte("https")) {
		return nil, false
	}
	auth := target[i+3:]
	if j := bytes.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	if j := bytes.LastIndexByte(auth, '@'); j >= 0 {
		auth = auth[j+1:]
	}
	return stripPort(auth), true
}

// stripPort drops a ":port" suffix, keeping an IPv6 literal's brackets.
func stripPort(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i >= 0 {
			return host[:i+1]
		}
		return host
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseNumber parses b as a number in base 10 or 16 (digits of either
// case) of at most maxDigits digits, the bound that keeps it within an
// int64: a Content-Length is decimal, at most 18 digits; a chunk size hex,
// at most 15.
func parseNumber(b []byte, base int64, maxDigits int) (int64, bool) {
	if len(b) == 0 || len(b) > maxDigits {
		return 0, false
	}
	var v int64
	for _, c := range b {
		d := digitValue(c)
		if d >= base {
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

// digitValue is the value of the digit c up to base 16, or 16 when c is
// not one.
func digitValue(c byte) int64 {
	switch {
	case '0' <= c && c <= '9':
		return int64(c - '0')
	case 'a' <= c && c <= 'f':
		return int64(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int64(c-'A') + 10
	}
	return 16
}
