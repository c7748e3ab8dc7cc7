// The addon's worker threads for page hashing: plain std::threads, grown on demand up to what
// callers ask for, shared by every scan in the process. No Node headers.
#pragma once

#include <functional>

namespace pagefuse {

// The default number of hashing threads: the CPUs this process may run on, at most 8.
int DefaultThreads();

// Runs fn(0) … fn(threads-1) concurrently on pool threads (scheduled SCHED_BATCH) and returns when
// all have returned. Exceptions must not escape fn.
void ParallelRun(int threads, const std::function<void(int)>& fn);

}  // namespace pagefuse
