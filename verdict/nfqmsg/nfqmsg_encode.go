package nfqmsg

import (
	"encoding/binary"

	"github.com/fwagent/fwagent/internal/nlmsg"
)

// Verdict is the answer for one packet.
type Verdict struct {
	// Code is Accept, Drop or Repeat.
	Code uint32
	// SetMark sends Mark as the packet's new mark.
	SetMark bool
	Mark    uint32
}

// Encoder builds verdict messages for one queue into one reused buffer, so
// that all verdicts of a read go to the kernel in a single write.
type Encoder struct {
	queue  uint16
	family uint8
	seq    uint32
	msgs   int
	// batch permits NFQNL_MSG_VERDICT_BATCH messages; see DisableBatch.
	noBatch bool
	buf     []byte
}

// NewEncoder makes an encoder for queue with room for n verdicts before it
// grows. family is the nfgenmsg family go-nfqueue would send (AF_UNSPEC for a
// queue opened for both IPv4 and IPv6).
func NewEncoder(queue uint16, family uint8, n int) *Encoder {
	return &Encoder{queue: queue, family: family, buf: make([]byte, 0, n*verdictMarkLen)}
}

const (
	verdictLen     = nlmsg.HdrLen + nlmsg.NfGenLen + nlmsg.AttrHdrLen + 8 // 32
	verdictMarkLen = verdictLen + nlmsg.AttrHdrLen + 4                    // 40
)

// Reset empties the buffer, keeping its memory.
func (e *Encoder) Reset() { e.buf, e.msgs = e.buf[:0], 0 }

// Bytes is the encoded messages, valid until the next Reset or Append.
func (e *Encoder) Bytes() []byte { return e.buf }

// Messages is how many netlink messages Bytes holds.
func (e *Encoder) Messages() int { return e.msgs }

// DisableBatch stops the encoder from emitting batch messages, for good. A
// batch verdict answers every packet still queued with an id up to its own,
// so once a packet may be queued that we never answered (a verdict write
// failed, a message had no id), a batch could answer it with someone else's
// verdict.
func (e *Encoder) DisableBatch() { e.noBatch = true }

// BatchDisabled reports whether DisableBatch was called.
func (e *Encoder) BatchDisabled() bool { return e.noBatch }

// AppendVerdict appends an NFQNL_MSG_VERDICT for packet id, with NFQA_MARK
// when v.SetMark.
func (e *Encoder) AppendVerdict(id uint32, v Verdict) {
	e.appendVerdict(typeVerdict, id, v)
}

// AppendBatch appends an NFQNL_MSG_VERDICT_BATCH: code for every packet still
// queued with an id up to and including id.
func (e *Encoder) AppendBatch(id uint32, code uint32) {
	e.AppendBatchVerdict(id, Verdict{Code: code})
}

// AppendBatchVerdict is AppendBatch with v's mark: the kernel sets NFQA_MARK
// of a batch message on every packet the batch answers
// (nfqnl_recv_verdict_batch).
func (e *Encoder) AppendBatchVerdict(id uint32, v Verdict) {
	e.appendVerdict(typeVerdictBatch, id, v)
}

// appendVerdict appends a verdict message of type typ (single or batch: the
// two share their layout) for id, with NFQA_MARK when v.SetMark.
func (e *Encoder) appendVerdict(typ uint16, id uint32, v Verdict) {
	n := verdictLen
	if v.SetMark {
		n = verdictMarkLen
	}
	b := e.header(typ, n)
	e.verdictHdr(b, v.Code, id)
	if v.SetMark {
		nlmsg.PutAttrBE32(b[verdictLen:], attrMark, v.Mark)
	}
}

// AppendVerdicts appends the verdicts vs[i] for pkts[i], in order, merging
// each run of two or more consecutive packets with increasing ids and the
// same verdict (code and mark alike) into one batch message: a flood that
// is dropped and logged (NF_REPEAT with the same mark) costs one message a
// read instead of one a packet. Every packet before a
// run has been answered by an earlier message of the same write, and ids are
// assigned in queue order, so the batch answers exactly the run.
func (e *Encoder) AppendVerdicts(pkts []Packet, vs []Verdict) {
	n := min(len(pkts), len(vs))
	for i := 0; i < n; {
		v := vs[i]
		j := i + 1
		if !e.noBatch {
			for j < n && vs[j] == v && idAfter(pkts[j].ID, pkts[j-1].ID) {
				j++
			}
		}
		if j-i > 1 {
			e.AppendBatchVerdict(pkts[j-1].ID, v)
		} else {
			e.AppendVerdict(pkts[i].ID, v)
		}
		i = j
	}
}

// idAfter is the kernel's nfq_id_after: a comes after b, modulo wrap-around.
func idAfter(a, b uint32) bool { return int32(b-a) < 0 }

// header appends an nlmsghdr and nfgenmsg for a message of n bytes and
// returns the message's bytes.
func (e *Encoder) header(typ uint16, n int) []byte {
	off := len(e.buf)
	if cap(e.buf)-off < n {
		nb := make([]byte, off, 2*cap(e.buf)+n)
		copy(nb, e.buf)
		e.buf = nb
	}
	e.buf = e.buf[:off+n]
	b := e.buf[off:]
	e.seq++
	e.msgs++
	nlmsg.PutHeader(b, n, typ, nlmsg.FlagRequest, e.seq)
	nlmsg.PutNfGen(b[nlmsg.HdrLen:], e.family, e.queue)
	return b
}

// verdictHdr writes NFQA_VERDICT_HDR (struct nfqnl_msg_verdict_hdr: be32
// verdict, be32 id) after the nfgenmsg.
func (e *Encoder) verdictHdr(b []byte, code, id uint32) {
	a := b[nlmsg.HdrLen+nlmsg.NfGenLen:]
	nlmsg.PutAttrHdr(a, nlmsg.AttrHdrLen+8, attrVerdictHdr)
	binary.BigEndian.PutUint32(a[4:8], code)
	binary.BigEndian.PutUint32(a[8:12], id)
}

// attr is one netlink attribute of a config message.
type attr struct {
	typ uint16
	val []byte
}

// appendConfig appends an NFQNL_MSG_CONFIG request for queue that asks for an
// acknowledgement. Config messages are rare, so this may allocate.
func appendConfig(buf []byte, seq uint32, queue uint16, attrs ...attr) []byte {
	n := nlmsg.HdrLen + nlmsg.NfGenLen
	for _, a := range attrs {
		n += nlmsg.Align(nlmsg.AttrHdrLen + len(a.val))
	}
	off := len(buf)
	buf = append(buf, make([]byte, n)...)
	b := buf[off:]
	nlmsg.PutHeader(b, n, typeConfig, nlmsg.FlagRequest|nlmsg.FlagAck, seq)
	nlmsg.PutNfGen(b[nlmsg.HdrLen:], 0, queue) // AF_UNSPEC, as go-nfqueue sends config
	p := b[nlmsg.HdrLen+nlmsg.NfGenLen:]
	for _, a := range attrs {
		l := nlmsg.AttrHdrLen + len(a.val)
		nlmsg.PutAttrHdr(p, l, a.typ)
		copy(p[nlmsg.AttrHdrLen:], a.val)
		p = p[nlmsg.Align(l):]
	}
	return buf
}
