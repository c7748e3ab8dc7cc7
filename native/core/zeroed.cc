#include "core/zeroed.h"

#include <sys/mman.h>

#include <cstdint>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace pagefuse {

namespace {

constexpr size_t kHuge = 2u << 20;

bool Huge(size_t bytes) { return bytes >= kHuge / 4; }
size_t Mapped(size_t bytes) { return Huge(bytes) ? (bytes + kHuge - 1) / kHuge * kHuge : bytes; }

}  // namespace

void* MapZeroed(size_t bytes) {
  const size_t len = Mapped(bytes);
  // (Not `len == bytes`: an array of a whole number of huge pages, such as the checksums of 2 GiB,
  // took this path and was faulted in 4 KiB at a time, 6 ms per 2 MiB in this VM.)
  if (!Huge(bytes)) {
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    madvise(p, len, MADV_POPULATE_WRITE);  // a hint: older kernels fault the pages in on first use
    return p;
  }
  // Aligned to 2 MiB, so that huge pages can back it: map 2 MiB more and trim both ends.
  void* raw = mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (base + kHuge - 1) & ~(kHuge - 1);
  if (start > base) munmap(raw, start - base);
  if (base + kHuge > start) munmap(reinterpret_cast<void*>(start + len), base + kHuge - start);
  void* p = reinterpret_cast<void*>(start);
  // Hints: a kernel without THP or without MADV_POPULATE_WRITE still gives zeroed memory.
  madvise(p, len, MADV_HUGEPAGE);
  madvise(p, len, MADV_POPULATE_WRITE);
  return p;
}

void FreeZeroed(void* addr, size_t bytes) { munmap(addr, Mapped(bytes)); }

}  // namespace pagefuse
