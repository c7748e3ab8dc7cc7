// Whole-process settings: KSM flags (prctl PR_SET/GET_MEMORY_MERGE, Linux 6.4+), the scheduling policy. No
// Node headers.
#pragma once

namespace pagefuse {

// Returns 0 or errno. EINVAL means the kernel has no PR_SET_MEMORY_MERGE (older than 6.4 or no KSM).
int SetMemoryMerge(bool on);

// Returns 0 or 1, or -errno.
int GetMemoryMerge();

// Puts every thread of this process under SCHED_BATCH, or back under SCHED_OTHER (`batch` false), its nice
// value kept: a SCHED_BATCH thread never preempts another on waking, it waits for the running one's slice
// to end. Threads created afterwards inherit the policy of the thread that creates them. Returns how many
// threads it set, or -errno (the first error other than a thread gone).
int SetAllThreadsBatch(bool batch);

}  // namespace pagefuse
