// Package verdict is the queue side of the agent: it binds the NFQUEUE
// queues, reads queued packets, runs each through the pipeline on a worker
// and sends the verdict back over netlink.
//
// Failure semantics, in one place:
//   - Every packet read gets a verdict. A packet that cannot be decoded gets
//     the policy's on_error verdict; a verdict that cannot be sent is counted
//     (the kernel then holds the packet until the queue is unbound, and with
//     fail-open lets it pass).
//   - With fail-open (the default) the queues are opened with
//     NFQA_CFG_F_FAIL_OPEN: when a queue is full the kernel accepts packets
//     instead of dropping them; together with the `bypass` flag of the queue
//     rule (rules/), packets also pass while no reader is bound at all, e.g.
//     while the agent restarts. With fail-closed both turn into drops.
//   - ENOBUFS (the kernel could not deliver a message to our socket because
//     its buffer was full) is counted and survived: those packets were
//     handled by the kernel per fail-open/closed.
//
// Reading: every queue is read with recvmmsg, many packets per system call,
// and each read is answered with one write (verdict/nfqmsg). go-nfqueue's
// one-packet loop is not in the agent; it lives in bench/naive as the
// reference the harness measures (bench/README.md has the figures).
//
// Flow order: packets are handed to workers by a hash of their addresses, so
// one flow's packets stay in order on one worker.
package verdict
