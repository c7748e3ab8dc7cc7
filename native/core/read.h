// The read baseline benches measure hashing against: every byte of a memory read once, as fast as
// this CPU reads, by one or several threads. No Node headers.
#pragma once

#include <cstdint>

#include "core/hash.h"

namespace pagefuse {

// Reads [data, data+len) with k.readSum in `streams` streams, on `threads` pool threads (as scans use).
// With `itemBytes` 0 each thread reads one contiguous share, split on page boundaries; else the threads
// take items of that many bytes from a shared counter, as the scan's threads take theirs, so a thread on
// a faster CPU reads more of them. Returns the sum of the 64-bit words read, so no read can be left out.
uint64_t ReadMemory(const HashKernels& k, const unsigned char* data, uint64_t len, int threads, int streams,
                    uint64_t itemBytes = 0);

}  // namespace pagefuse
