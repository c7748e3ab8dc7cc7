#include "core/process.h"

#include <sys/prctl.h>

#include <cerrno>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

namespace pagefuse {

int SetMemoryMerge(bool on) {
  for (;;) {
    if (prctl(PR_SET_MEMORY_MERGE, on ? 1 : 0, 0, 0, 0) == 0) return 0;
    // Taking mmap_lock killably can fail with EINTR; switching it off unmerges and may be interrupted too.
    if (errno != EINTR) return errno;
  }
}

int GetMemoryMerge() {
  int rc = prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
  return rc < 0 ? -errno : rc;
}

}  // namespace pagefuse
