// Whole-process KSM flags (prctl PR_SET/GET_MEMORY_MERGE, Linux 6.4+). No Node headers.
#pragma once

namespace pagefuse {

// Returns 0 or errno. EINVAL means the kernel has no PR_SET_MEMORY_MERGE (older than 6.4 or no KSM).
int SetMemoryMerge(bool on);

// Returns 0 or 1, or -errno.
int GetMemoryMerge();

}  // namespace pagefuse
