#include "core/zero.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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

constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kExclusive = uint64_t{1} << 56;

// One /proc/self/pagemap entry per page of [addr, addr+len); 0 or errno.
static int ReadPagemap(void* addr, size_t len, size_t page_size, std::vector<uint64_t>* entries) {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  entries->assign((len + page_size - 1) / page_size, 0);
  off_t offset = static_cast<off_t>(reinterpret_cast<uintptr_t>(addr) / page_size * sizeof(uint64_t));
  size_t want = entries->size() * sizeof(uint64_t);
  size_t got = 0;
  int err = 0;
  while (got < want) {
    ssize_t n = pread(fd, reinterpret_cast<char*>(entries->data()) + got, want - got, offset + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    got += static_cast<size_t>(n);
  }
  close(fd);
  return err;
}

ZeroReclaim ReclaimZeroPages(uint8_t* addr, size_t len, size_t page_size) {
  ZeroReclaim out;
  std::vector<uint64_t> map;
  out.error = ReadPagemap(addr, len, page_size, &map);
  if (out.error != 0) return out;
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
  for (size_t i = 0; i < map.size(); i++) {
    bool present = map[i] & kPresent;
    // A page not present reads as zero already, and reading it would only fault it in. A present page
    // that is not exclusively ours (the shared zero page, a KSM page) costs this process nothing.
    bool owned = present && (map[i] & kExclusive);
    bool zero = !present || IsZeroPage(addr + i * page_size, page_size);
    if (zero) out.zero_pages++;
    if (zero && owned) {
      if (run_len == 0) run_start = i;
      run_len++;
    } else if (!flush()) {
      return out;
    }
  }
  flush();
  return out;
}

long OwnedPages(void* addr, size_t len, size_t page_size) {
  std::vector<uint64_t> map;
  int err = ReadPagemap(addr, len, page_size, &map);
  if (err != 0) return -err;
  long count = 0;
  for (uint64_t e : map) count += (e & kPresent) && (e & kExclusive);
  return count;
}

}  // namespace pagefuse
