#include "core/index.h"

namespace pagefuse {

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
