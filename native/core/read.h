// The read baseline benches measure hashing against: every byte of a memory read once, as fast as
// this CPU reads, by one or several threads. No Node headers.
#pragma once

#include <cstdint>

#include "core/hash.h"

namespace pagefuse {

// Reads [data, data+len) with k.readSum: `threads` pool threads (as scans use) each read a contiguous
// share, split on page boundaries, in `streams` streams. Returns the sum of the 64-bit words read, so
// no read can be left out.
uint64_t ReadMemory(const HashKernels& k, const unsigned char* data, uint64_t len, int threads, int streams);

}  // namespace pagefuse
