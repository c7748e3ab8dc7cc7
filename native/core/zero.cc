#include "core/zero.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace pagefuse {

bool IsZeroPage(const uint8_t* page, size_t page_size) {
  // OR-reduce 64-bit words: the compiler vectorizes this loop; no early exit keeps it branch-free.
  const uint64_t* w = reinterpret_cast<const uint64_t*>(page);
  size_t n = page_size / sizeof(uint64_t);
  uint64_t acc = 0;
  for (size_t i = 0; i < n; i++) acc |= w[i];
  return acc == 0;
}

static int Residency(void* addr, size_t len, size_t page_size, std::vector<unsigned char>* vec) {
  vec->assign((len + page_size - 1) / page_size, 0);
  return mincore(addr, len, vec->data()) == 0 ? 0 : errno;
}

ZeroReclaim ReclaimZeroPages(uint8_t* addr, size_t len, size_t page_size) {
  ZeroReclaim out;
  std::vector<unsigned char> resident;
  out.error = Residency(addr, len, page_size, &resident);
  if (out.error != 0) return out;
  size_t pages = resident.size();
  size_t run_start = 0, run_len = 0;
  auto flush = [&]() -> bool {
    if (run_len == 0) return true;
    if (madvise(addr + run_start * page_size, run_len * page_size, MADV_DONTNEED) != 0) {
      out.error = errno;
      return false;
    }
    out.reclaimed_pages += run_len;
    run_len = 0;
    return true;
  };
  for (size_t i = 0; i < pages; i++) {
    bool is_resident = resident[i] & 1;
    // A page that is not resident reads as zero already; reading it would only fault it in.
    bool zero = !is_resident || IsZeroPage(addr + i * page_size, page_size);
    if (zero) out.zero_pages++;
    if (zero && is_resident) {
      if (run_len == 0) run_start = i;
      run_len++;
    } else if (!flush()) {
      return out;
    }
  }
  flush();
  return out;
}

long ResidentPages(void* addr, size_t len, size_t page_size) {
  std::vector<unsigned char> resident;
  int err = Residency(addr, len, page_size, &resident);
  if (err != 0) return -err;
  long count = 0;
  for (unsigned char r : resident) count += r & 1;
  return count;
}

}  // namespace pagefuse
