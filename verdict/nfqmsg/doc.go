// Package nfqmsg is the fast path of the queue side: it reads many queued
// packets per system call from an NFQUEUE netlink socket and answers all of
// them with one write, parsing and encoding the netlink messages in place
// without allocating.
//
// go-nfqueue reads one message per syscall, peeks before every read and
// allocates per attribute; that capped the agent well below a C
// libnetfilter_queue loop (see bench/README.md, Latest results: naive
// against cloop). This package keeps go-nfqueue for opening the socket and
// does the rest itself:
//
//   - Parse turns a received datagram into a reused slice of Packet values
//     whose Payload aliases the receive buffer.
//   - Encoder builds NFQNL_MSG_VERDICT and NFQNL_MSG_VERDICT_BATCH messages
//     into one reused buffer; a batch message covers a run of consecutive,
//     increasing ids with the same verdict and mark, because the kernel
//     verdicts every queued id up to the batch's id.
//   - Reader binds a queue, reads with recvmmsg through the socket's
//     syscall.RawConn, hands each read to a BatchFunc and sends its verdicts.
//
// Failure semantics: every packet read gets exactly one verdict, including
// packets whose message was truncated (their Payload is nil, so the caller's
// decoder reports an error and its on_error verdict applies). ENOBUFS from the
// socket is counted and survived: the kernel already accepted (fail-open) or
// dropped those packets. Error replies the kernel sends for verdicts it could
// not apply are counted.
package nfqmsg
