#include "core/index.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace pagefuse {

bool CpuHasPrefetchW() {
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(0x80000001u, &a, &b, &c, &d) != 0 && (c & (1u << 8)) != 0;
#else
  return false;
#endif
}

ContentIndex::ContentIndex(uint64_t contents, uint32_t* lows, uint32_t targets, bool counts, bool shared)
    : capacity_(contents + contents / 4 + 16), lows_(lows), words_(targets > 1 ? (targets + 63) / 64 : 0), shared_(shared) {
  slots_.reset(capacity_);
  if (words_ > 0) masks_.reset(capacity_ * words_);
  if (counts) counts_.reset(capacity_);
}

size_t ContentIndex::bytes() const {
  return capacity_ * (8 + 8 * words_ + (counts_ ? 4 : 0));
}

}  // namespace pagefuse
