#include "core/mapping.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace pagefuse {

size_t PageSize() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

void* MapAnonymous(size_t bytes, HugePages huge, int* err) {
  void* addr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (addr == MAP_FAILED) {
    *err = errno;
    return nullptr;
  }
  int rc = 0;
  if (huge == HugePages::kNever) rc = madvise(addr, bytes, MADV_NOHUGEPAGE);
  if (huge == HugePages::kAlways) rc = madvise(addr, bytes, MADV_HUGEPAGE);
  // A kernel without THP rejects the hint with EINVAL; the mapping is still usable.
  if (rc != 0 && errno != EINVAL) {
    *err = errno;
    munmap(addr, bytes);
    return nullptr;
  }
  *err = 0;
  return addr;
}

int AdviseRange(void* addr, size_t len, Advice advice) {
  int flag = 0;
  switch (advice) {
    case Advice::kMergeable: flag = MADV_MERGEABLE; break;
    case Advice::kUnmergeable: flag = MADV_UNMERGEABLE; break;
    case Advice::kHugepage: flag = MADV_HUGEPAGE; break;
    case Advice::kNohugepage: flag = MADV_NOHUGEPAGE; break;
    case Advice::kDontneed: flag = MADV_DONTNEED; break;
#ifdef MADV_COLD
    case Advice::kCold: flag = MADV_COLD; break;
#else
    case Advice::kCold: flag = 20; break;
#endif
#ifdef MADV_PAGEOUT
    case Advice::kPageout: flag = MADV_PAGEOUT; break;
#else
    case Advice::kPageout: flag = 21; break;
#endif
  }
  for (;;) {
    if (madvise(addr, len, flag) == 0) return 0;
    // MADV_UNMERGEABLE breaks COW page by page and can be interrupted; it is safe to repeat.
    if (errno != EINTR) return errno;
  }
}

bool Mapping::UnmapOnce() {
  bool expected = false;
  if (!unmapped_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return false;
  munmap(addr_, length_);
  return true;
}

bool Mapping::Unref() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return false;
  bool unmapped = UnmapOnce();
  delete this;
  return unmapped;
}

bool Mapping::Pin() {
  pins_.fetch_add(1, std::memory_order_acq_rel);
  if (disposed()) {
    Unpin();
    return false;
  }
  return true;
}

bool Mapping::Unpin() {
  if (pins_.fetch_sub(1, std::memory_order_acq_rel) == 1 && disposed()) return UnmapOnce();
  return false;
}

bool Mapping::Dispose() {
  bool expected = false;
  if (!disposed_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return false;
  if (pins_.load(std::memory_order_acquire) == 0) return UnmapOnce();
  return false;
}

}  // namespace pagefuse
