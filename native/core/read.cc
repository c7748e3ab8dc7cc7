#include "core/read.h"

#include <atomic>

#include "core/mapping.h"
#include "core/pool.h"

namespace pagefuse {

uint64_t ReadMemory(const HashKernels& k, const unsigned char* data, uint64_t len, int threads, int streams,
                    uint64_t itemBytes) {
  const int n = threads < 1 ? 1 : threads;
  const uint64_t page = PageSize();
  std::atomic<uint64_t> sum{0};
  if (itemBytes > 0) {
    const uint64_t item = (itemBytes + page - 1) / page * page;
    std::atomic<uint64_t> next{0};
    ParallelRun(n, [&](int) {
      uint64_t mine = 0;
      for (;;) {
        const uint64_t from = next.fetch_add(item, std::memory_order_relaxed);
        if (from >= len) break;
        mine += k.readSum(data + from, from + item < len ? item : len - from, streams);
      }
      sum.fetch_add(mine, std::memory_order_relaxed);
    });
    return sum.load();
  }
  const uint64_t share = (len / page + n - 1) / n * page;
  ParallelRun(n, [&](int id) {
    const uint64_t from = share * id;
    if (from >= len) return;
    const uint64_t to = from + share < len ? from + share : len;
    sum.fetch_add(k.readSum(data + from, to - from, streams), std::memory_order_relaxed);
  });
  return sum.load();
}

}  // namespace pagefuse
