// Reading another process's pages: shared pages (a KSM page, or one shared with a fork) must stay shared;
// the pagemap walk reads the entries of present memory only, and stops when cancelled.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
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

// Whether this kernel has PAGEMAP_SCAN (6.7+): an empty query of /proc/self/pagemap is accepted.
bool HasPagemapScan() {
  struct {
    uint64_t size, flags, start, end, walkEnd, vec, vecLen, maxPages, inverted, mask, anyof, ret;
  } arg{};
  arg.size = sizeof arg;
  int fd = open("/proc/self/pagemap", O_RDONLY);
  int r = ioctl(fd, _IOWR('f', 16, decltype(arg)), &arg);
  close(fd);
  return r >= 0;
}

// 64 TiB of untouched PROT_READ, MADV_MERGEABLE address space (no memory, no anon_vma), with 10 pages
// written through windows made writable: 3 at its start, 5 at 20 TiB, 2 at its end.
class SparseMapping {
 public:
  static constexpr uint64_t kLen = 64ull << 40;
  SparseMapping() {
    base_ = static_cast<unsigned char*>(mmap(nullptr, kLen, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    CHECK(base_ != MAP_FAILED);
    madvise(base_, kLen, MADV_NOHUGEPAGE);
    madvise(base_, kLen, MADV_MERGEABLE);
    Write(0, 3);
    Write(20ull << 40, 5);
    Write(kLen - 2 * kPage, 2);
  }
  ~SparseMapping() { munmap(base_, kLen); }
  uint64_t At(uint64_t offset) const { return reinterpret_cast<uintptr_t>(base_) + offset; }
  std::vector<AnonMapping> Maps() const { return {AnonMapping{At(0), At(kLen), true, false}}; }

 private:
  void Write(uint64_t offset, size_t pages) {
    CHECK_EQ(mprotect(base_ + offset, pages * kPage, PROT_READ | PROT_WRITE), 0);
    // Contents found nowhere else, so that a running ksmd merges none of them (that would split the runs).
    auto* w = reinterpret_cast<uint64_t*>(base_ + offset);
    for (size_t j = 0; j < pages * kPage / 8; j++) w[j] = (At(offset) + j * 8) * 0x9E3779B97F4A7C15ull + 1;
  }
  unsigned char* base_;
};

}  // namespace

// The tuner takes a process whose argv[0] names a VMM for a VM: an untouched mapping of tens of TiB costs
// its owner nothing, and reading a pagemap entry per page of it cost the scan 0.75 s per TiB.
TEST(an_untouched_64_tib_mapping_is_not_walked_page_by_page) {
  if (!HasPagemapScan()) {
    std::printf("# skipped: no PAGEMAP_SCAN on this kernel (every entry is read)\n");
    return;
  }
  SparseMapping m;
  ResidentScan resident;
  CHECK_EQ(ReadResidentPages("/proc", getpid(), m.Maps(), &resident), 0);
  CHECK_EQ(resident.runs.size(), 3ul);
  if (resident.runs.size() == 3) {
    CHECK_EQ(resident.runs[0].address, m.At(0));
    CHECK_EQ(resident.runs[0].pages, 3ul);
    CHECK_EQ(resident.runs[1].address, m.At(20ull << 40));
    CHECK_EQ(resident.runs[1].pages, 5ul);
    CHECK_EQ(resident.runs[2].address, m.At(SparseMapping::kLen - 2 * kPage));
    CHECK_EQ(resident.runs[2].pages, 2ul);
  }
  CHECK_EQ(resident.absentPages, SparseMapping::kLen / kPage - 10);
  CHECK_EQ(resident.zeroMappedPages, 0ul);
  // The entries of the 10 present pages, not the 2^34 of the mapping.
  CHECK_EQ(resident.entriesRead, 10ul);
}

TEST(a_cancelled_walk_reads_no_entry) {
  SparseMapping m;
  std::atomic<bool> cancel{true};
  ResidentScan resident;
  CHECK_EQ(ReadResidentPages("/proc", getpid(), m.Maps(), &resident, &cancel), ECANCELED);
  CHECK_EQ(resident.entriesRead, 0ul);
  CHECK(resident.runs.empty());
}

// A procRoot whose pagemap is a plain file (no PAGEMAP_SCAN there): every entry is read, as before,
// with the same counts.
TEST(without_pagemap_scan_every_entry_is_read) {
  char dir[] = "/tmp/pagefuse-procmem-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  std::string pidDir = std::string(dir) + "/4242";
  CHECK_EQ(mkdir(pidDir.c_str(), 0700), 0);
  const uint64_t start = 0x7f0000000000ull, pages = 4096;
  std::vector<uint64_t> entries(pages, 0);
  for (uint64_t i : {5ull, 6ull, 7ull, 4000ull}) entries[i] = (1ull << 63) | (1ull << 56);
  int fd = open((pidDir + "/pagemap").c_str(), O_CREAT | O_WRONLY, 0600);
  CHECK(fd >= 0);
  CHECK_EQ(pwrite(fd, entries.data(), pages * 8, static_cast<off_t>(start / kPage * 8)), static_cast<ssize_t>(pages * 8));
  close(fd);
  std::vector<AnonMapping> maps{AnonMapping{start, start + pages * kPage, true, false}};
  ResidentScan resident;
  CHECK_EQ(ReadResidentPages(dir, 4242, maps, &resident), 0);
  CHECK_EQ(resident.runs.size(), 2ul);
  if (resident.runs.size() == 2) {
    CHECK_EQ(resident.runs[0].address, start + 5 * kPage);
    CHECK_EQ(resident.runs[0].pages, 3ul);
    CHECK_EQ(resident.runs[1].address, start + 4000 * kPage);
    CHECK(!resident.runs[1].shared);
  }
  CHECK_EQ(resident.absentPages, pages - 4);
  CHECK_EQ(resident.entriesRead, pages);
  std::atomic<bool> cancel{true};
  CHECK_EQ(ReadResidentPages(dir, 4242, maps, &resident, &cancel), ECANCELED);
  unlink((pidDir + "/pagemap").c_str());
  rmdir(pidDir.c_str());
  rmdir(dir);
}

// smaps lines are read whole: a mapped file's path may be PATH_MAX long, and a line cut at 4096 bytes
// started the next read mid-path, where the file's owner wrote a mapping header of their choosing.
TEST(a_long_mapped_path_cannot_forge_a_mapping_line) {
  char dir[] = "/tmp/pagefuse-procmem-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  std::string pidDir = std::string(dir) + "/4242";
  CHECK_EQ(mkdir(pidDir.c_str(), 0700), 0);
  const std::string head = "00400000-00452000 r--p 00000000 08:02 173521                             /";
  const std::string forged = "7f0000000000-7f1000000000 rw-p 00000000 00:00 0 ";
  std::string path(4095 - head.size(), 'a');
  std::string smaps = head + path + forged + "\nVmFlags: rd mr mw me mg\n" +
                      "7f2000000000-7f2000001000 rw-p 00000000 00:00 0 \nVmFlags: rd wr mr mw me ac mg\n";
  FILE* f = std::fopen((pidDir + "/smaps").c_str(), "w");
  CHECK(f != nullptr);
  std::fputs(smaps.c_str(), f);
  std::fclose(f);
  std::vector<AnonMapping> maps;
  CHECK_EQ(ReadAnonMappings(dir, 4242, true, &maps), 0);
  CHECK_EQ(maps.size(), 1ul);
  if (maps.size() == 1) CHECK_EQ(maps[0].start, 0x7f2000000000ull);
  unlink((pidDir + "/smaps").c_str());
  rmdir(pidDir.c_str());
  rmdir(dir);
}

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
