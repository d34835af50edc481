// Package ratelimit decides whether a packet is under a policy rule's rate:
// a token bucket for a rule-wide limit (Bucket) and a fixed-size table of
// buckets keyed by source, destination or flow (Table).
//
// Time is always supplied by the caller as monotonic nanoseconds, so that
// tests and `fwagent eval` replaying a capture drive the limiter with their
// own clock. Nothing here allocates after construction.
package ratelimit
