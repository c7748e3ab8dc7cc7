// Pages that are entirely zero, and giving them back to the kernel. No Node headers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagefuse {

bool IsZeroPage(const uint8_t* page, size_t page_size);

struct ZeroReclaim {
  size_t zero_pages = 0;       // pages found entirely zero (resident or not)
  size_t reclaimed_pages = 0;  // of those, resident ones dropped with MADV_DONTNEED
  int error = 0;               // errno of a failed madvise/mincore, 0 if none
};

// Finds the pages of [addr, addr+len) that are entirely zero and drops the resident ones with
// MADV_DONTNEED, so later reads map the shared zero page. Non-resident pages are not read (reading
// would fault them in). Pages that are not zero are never touched. The caller must make sure nothing
// writes to the range while this runs (JS calls it synchronously, chunk by chunk).
ZeroReclaim ReclaimZeroPages(uint8_t* addr, size_t len, size_t page_size);

// Number of resident pages in [addr, addr+len) according to mincore(); -errno on failure.
long ResidentPages(void* addr, size_t len, size_t page_size);

}  // namespace pagefuse
