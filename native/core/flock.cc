#include "core/flock.h"

#include <cerrno>
#include <sys/file.h>

namespace pagefuse {

int TryLockExclusive(int fd) {
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    if (errno != EINTR) return errno == EAGAIN ? EWOULDBLOCK : errno;
  }
}

}  // namespace pagefuse
