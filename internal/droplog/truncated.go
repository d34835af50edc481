package droplog

import (
	"github.com/fwagent/fwagent/internal/packet"
)

// decodeCopy decodes a payload that the kernel may have cut at CopyRange.
//
// Decode rejects a packet shorter than its headers claim (ErrTruncated),
// which is right for queued packets but not for a log copy that stops after
// the headers on purpose. DecodeHeaders accepts IP and UDP lengths that run
// past the copy while still requiring whole headers, and reports in Length
// what the IP header claims; everything the event shows lies in the copied
// headers.
func (r *Reader) decodeCopy(b []byte, p *packet.Packet) error {
	return r.dec.DecodeHeaders(b, p)
}
