// Pages that are entirely zero, and giving them back to the kernel. No Node headers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagefuse {

bool IsZeroPage(const uint8_t* page, size_t page_size);

struct ZeroReclaim {
  size_t zero_pages = 0;       // pages found entirely zero (resident or not)
  size_t reclaimed_pages = 0;  // of those, pages of our own dropped with MADV_DONTNEED
  int error = 0;               // errno of a failed pagemap read or madvise, 0 if none
};

// Finds the pages of [addr, addr+len) that are entirely zero and drops those backed by memory of their
// own (present and exclusive in /proc/self/pagemap) with MADV_DONTNEED, so later reads map the shared
// zero page (or, on kernels that allocate on read faults, a fresh page: docs/kernel.md). Pages not
// present are not read (reading would fault them in). Pages that are not zero are never touched. The
// caller must make sure nothing
// writes to the range while this runs (JS calls it synchronously, chunk by chunk).
ZeroReclaim ReclaimZeroPages(uint8_t* addr, size_t len, size_t page_size);

// Pages of [addr, addr+len) of this process backed by memory of their own: present and exclusively
// mapped in /proc/self/pagemap (bits 63 and 56). The shared zero page and KSM pages are not counted,
// which is what RSS accounting sees. -errno on failure.
long OwnedPages(void* addr, size_t len, size_t page_size);

}  // namespace pagefuse
