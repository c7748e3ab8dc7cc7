// Reading another process's pages: shared pages (a KSM page, or one shared with a fork) must stay shared.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/procmem.h"
#include "test/check.h"

using namespace pagefuse;

namespace {

const size_t kPage = 4096;
const uint64_t kExclusive = 1ull << 56;

unsigned char* Filled(size_t pages) {
  auto* p = static_cast<unsigned char*>(mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  madvise(p, pages * kPage, MADV_NOHUGEPAGE);
  for (size_t i = 0; i < pages * kPage; i++) p[i] = static_cast<unsigned char>(i * 7 + i / kPage);
  return p;
}

// Pages of `pid` in [p, p + pages) that are exclusively mapped (pagemap bit 56).
size_t ExclusivePages(pid_t pid, const unsigned char* p, size_t pages) {
  int fd = open(("/proc/" + std::to_string(pid) + "/pagemap").c_str(), O_RDONLY);
  std::vector<uint64_t> e(pages);
  ssize_t got = pread(fd, e.data(), pages * 8, static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / kPage * 8));
  close(fd);
  size_t n = 0;
  for (size_t i = 0; i < static_cast<size_t>(got) / 8; i++) n += (e[i] & kExclusive) != 0;
  return n;
}

}  // namespace

TEST(read_remote_gives_the_same_bytes_either_way) {
  const size_t pages = 32;
  unsigned char* p = Filled(pages);
  uint64_t addrs[4] = {reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p + 8 * kPage),
                       reinterpret_cast<uintptr_t>(p + 9 * kPage), reinterpret_cast<uintptr_t>(p + 20 * kPage)};
  uint64_t lens[4] = {8 * kPage, kPage, 11 * kPage, 12 * kPage};
  bool viaMem[4] = {false, true, true, false};
  std::vector<unsigned char> dst(pages * kPage, 0xEE);
  std::vector<bool> failed;
  CHECK_EQ(ReadRemote(getpid(), addrs, lens, 4, dst.data(), &failed, viaMem), 0);
  for (bool f : failed) CHECK(!f);
  CHECK(std::memcmp(dst.data(), p, pages * kPage) == 0);
  munmap(p, pages * kPage);
}

TEST(pages_shared_with_a_fork_are_read_without_unsharing_them) {
  const size_t pages = 16;
  unsigned char* p = Filled(pages);
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  CHECK(child > 0);
  // Parent and child map the same pages: in the child none is exclusive.
  CHECK_EQ(ExclusivePages(child, p, pages), 0ul);
  std::vector<AnonMapping> maps{AnonMapping{reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + pages * kPage, false, false}};
  ResidentScan resident;
  CHECK_EQ(ReadResidentPages("/proc", child, maps, &resident), 0);
  CHECK_EQ(resident.runs.size(), 1ul);
  CHECK(resident.runs[0].shared);
  std::vector<unsigned char> dst(pages * kPage);
  std::vector<bool> failed;
  uint64_t addr = resident.runs[0].address, len = resident.runs[0].pages * kPage;
  bool viaMem = resident.runs[0].shared;
  CHECK_EQ(ReadRemote(child, &addr, &len, 1, dst.data(), &failed, &viaMem), 0);
  CHECK(std::memcmp(dst.data(), p, pages * kPage) == 0);
  CHECK_EQ(ExclusivePages(child, p, pages), 0ul);  // still shared: nothing was copied
  // process_vm_readv pins read-only, and the kernel unshares what it pins that way.
  viaMem = false;
  CHECK_EQ(ReadRemote(child, &addr, &len, 1, dst.data(), &failed, &viaMem), 0);
  CHECK_EQ(ExclusivePages(child, p, pages), pages);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  munmap(p, pages * kPage);
}

TEST_MAIN()
