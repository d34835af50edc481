// Package instance makes sure one agent at a time runs in a network
// namespace: each agent holds an exclusive flock on a lock file named after
// its namespace's inode, and writes its pid into it so that a second agent
// can say which one it met.
//
// An flock, not a pid file or a mark on the nft table: the kernel drops it
// when the holder dies, however it dies, so a crashed agent never blocks
// the next start and no stale state needs cleaning (a clean stop also
// removes the file).
package instance
