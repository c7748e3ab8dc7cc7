#include "core/process.h"

#include <dirent.h>
#include <sched.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstdlib>

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

int SetAllThreadsBatch(bool batch) {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -errno;
  int set = 0;
  int failed = 0;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    long tid = strtol(e->d_name, &end, 10);
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || *end != '\0' || tid <= 0) continue;
    sched_param param{};
    param.sched_priority = 0;
    if (sched_setscheduler(static_cast<pid_t>(tid), batch ? SCHED_BATCH : SCHED_OTHER, &param) == 0) {
      set++;
    } else if (errno != ESRCH && failed == 0) {
      failed = errno;  // ESRCH: the thread ended since it was listed
    }
  }
  closedir(dir);
  return failed != 0 ? -failed : set;
}

}  // namespace pagefuse
