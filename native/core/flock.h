// flock(2) on a file descriptor the JS side opened: the host's single-instance locks. No Node headers.
#pragma once

namespace pagefuse {

// Takes an exclusive lock without waiting. Returns 0 when taken, EWOULDBLOCK when another open file
// description holds it, or another errno. The lock lives as long as the descriptor stays open, and the
// kernel drops it when the process dies, however it dies.
int TryLockExclusive(int fd);

}  // namespace pagefuse
