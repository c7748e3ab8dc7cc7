#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/index.h"
#include "core/mapping.h"
#include "core/pool.h"
#include "core/scan.h"
#include "test/check.h"

using namespace pagefuse;

namespace {

const size_t kPage = 4096;

// A buffer of `unique` random pages, `zero` zero pages and `groups` contents each repeated `copies` times,
// shuffled with a fixed seed.
std::vector<unsigned char> Build(size_t unique, size_t zero, size_t groups, size_t copies, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> kinds;  // -1 zero, -2 unique, g ≥ 0 group
  for (size_t i = 0; i < unique; i++) kinds.push_back(-2);
  for (size_t i = 0; i < zero; i++) kinds.push_back(-1);
  for (size_t g = 0; g < groups; g++)
    for (size_t c = 0; c < copies; c++) kinds.push_back(static_cast<int>(g));
  std::shuffle(kinds.begin(), kinds.end(), rng);
  std::vector<unsigned char> buf(kinds.size() * kPage, 0);
  for (size_t i = 0; i < kinds.size(); i++) {
    uint64_t* w = reinterpret_cast<uint64_t*>(&buf[i * kPage]);
    if (kinds[i] == -1) continue;
    if (kinds[i] == -2) {
      for (size_t j = 0; j < kPage / 8; j++) w[j] = rng();
    } else {
      std::mt19937_64 g(1000003ull * (seed + 1) + static_cast<uint64_t>(kinds[i]));
      for (size_t j = 0; j < kPage / 8; j++) w[j] = g();
    }
  }
  return buf;
}

ScanTarget Mem(const std::vector<unsigned char>& b) {
  ScanTarget t;
  t.data = b.data();
  t.length = b.size();
  return t;
}

ScanResult Scan(const std::vector<ScanTarget>& targets, ScanMode mode, int threads = 1, int hashBits = 64,
                int* errOut = nullptr) {
  ScanOptions o;
  o.mode = mode;
  o.threads = threads;
  o.hashBits = hashBits;
  ScanControl c;
  ScanResult r;
  std::string what;
  int err = RunScan(targets, o, c, &r, &what);
  if (errOut) *errOut = err;
  else CHECK_EQ(err, 0);
  return r;
}

}  // namespace

TEST(exact_counts_unique_zero_and_duplicated_pages) {
  auto buf = Build(100, 20, 10, 5, 1);
  for (ScanMode mode : {ScanMode::kExact, ScanMode::kFast}) {
    for (int threads : {1, 2, 3}) {
      ScanResult r = Scan({Mem(buf)}, mode, threads);
      const TargetResult& t = r.targets[0];
      CHECK_EQ(t.pages, 170ul);
      CHECK_EQ(t.zeroPages, 20ul);
      CHECK_EQ(r.distinct, 110ul);
      CHECK_EQ(t.distinct, 110ul);
      CHECK_EQ(t.indexedPages - t.distinct, 40ul);
      CHECK_EQ(t.mergingPages, 50ul);
      CHECK_EQ(r.collisions, 0ul);
      CHECK_EQ(t.tailBytes, 0ul);
      uint64_t dens = 0, dpages = 0;
      for (auto& d : t.density) {
        dens += d.duplicatePages;
        dpages += d.pages;
      }
      CHECK_EQ(dpages, 170ul);
      CHECK_EQ(dens, 70ul);  // 50 merging + 20 zero
    }
  }
}

TEST(a_tail_shorter_than_a_page_is_reported) {
  auto buf = Build(3, 0, 0, 0, 2);
  ScanTarget t = Mem(buf);
  t.length = 3 * kPage - 100;
  ScanResult r = Scan({t}, ScanMode::kExact);
  CHECK_EQ(r.targets[0].pages, 2ul);
  CHECK_EQ(r.targets[0].tailBytes, kPage - 100);
}

TEST(forced_collisions_are_caught_by_the_byte_compare) {
  auto buf = Build(300, 0, 5, 4, 3);
  ScanResult r = Scan({Mem(buf)}, ScanMode::kExact, 2, 4);  // 16 hash values for 305 contents
  CHECK(r.collisions > 0);
  CHECK_EQ(r.distinct, 305ul);
  CHECK_EQ(r.targets[0].indexedPages - r.targets[0].distinct, 15ul);
  ScanResult f = Scan({Mem(buf)}, ScanMode::kFast, 2, 4);
  CHECK_EQ(f.distinct, 305ul);
}

TEST(targets_share_contents_pairwise) {
  // a: common 0..9, own 20 unique; b: common 0..9 + 5 shared with c; c: 5 shared with b, 2 zero.
  std::vector<unsigned char> common = Build(0, 0, 10, 1, 9), bc = Build(0, 0, 5, 1, 11);
  auto own = Build(20, 0, 0, 0, 12);
  std::vector<unsigned char> a = common, b = common, c = bc;
  a.insert(a.end(), own.begin(), own.end());
  b.insert(b.end(), bc.begin(), bc.end());
  c.insert(c.end(), 2 * kPage, 0);
  for (ScanMode mode : {ScanMode::kExact, ScanMode::kFast}) {
    ScanResult r = Scan({Mem(a), Mem(b), Mem(c)}, mode, 2);
    CHECK_EQ(r.sharing[0][1], 10ul);
    CHECK_EQ(r.sharing[1][0], 10ul);
    CHECK_EQ(r.sharing[1][2], 5ul);
    CHECK_EQ(r.sharing[0][2], 0ul);
    CHECK_EQ(r.sharing[0][0], 0ul);
    CHECK_EQ(r.targets[0].sharedWithOthers, 10ul);
    CHECK_EQ(r.targets[1].sharedWithOthers, 15ul);
    CHECK_EQ(r.targets[2].sharedWithOthers, 5ul);
    CHECK_EQ(r.targets[2].zeroPages, 2ul);
    CHECK_EQ(r.distinct, 35ul);
    CHECK_EQ(r.targets[0].mergingPages, 10ul);
    CHECK_EQ(r.targets[1].mergingPages, 15ul);
    CHECK_EQ(r.targets[2].mergingPages, 5ul);
  }
}

TEST(sampled_mode_stays_within_its_bound) {
  auto buf = Build(2000, 0, 400, 6, 5);  // 2400 contents, 2000 duplicates
  ScanOptions o;
  o.mode = ScanMode::kSampled;
  o.sampleRate = 4;
  o.threads = 2;
  ScanControl c;
  ScanResult r;
  std::string what;
  CHECK_EQ(RunScan({Mem(buf)}, o, c, &r, &what), 0);
  const TargetResult& t = r.targets[0];
  double est = 4.0 * static_cast<double>(t.sampledPages - t.distinct);
  double bound = 3 * std::sqrt(3.0 * 4.0 * std::max(r.sumSquares, 1.0));
  std::printf("sampled estimate %.0f ± %.0f (true 2000)\n", est, bound);
  CHECK(std::fabs(est - 2000) <= bound);
  CHECK_EQ(t.indexedPages, 4400ul);
}

TEST(changed_pages_are_volatile_on_the_next_scan) {
  auto buf = Build(50, 10, 5, 3, 6);
  for (ScanMode mode : {ScanMode::kExact, ScanMode::kFast}) {
    ScanResult first = Scan({Mem(buf)}, mode);
    auto copy = buf;
    copy[0] ^= 1;          // first line: seen by both modes
    copy[7 * kPage] ^= 1;
    ScanTarget t = Mem(copy);
    t.previous = first.targets[0].state;
    ScanResult second = Scan({t}, mode);
    CHECK_EQ(second.targets[0].volatilePages, 2ul);
    CHECK_EQ(second.targets[0].pages, 75ul);
  }
}

TEST(a_process_that_does_not_exist_is_esrch) {
  ScanTarget t;
  t.process = true;
  t.pid = 0x3ffffff0;
  int err = 0;
  Scan({t}, ScanMode::kExact, 1, 64, &err);
  CHECK_EQ(err, ESRCH);
}

TEST(a_process_is_read_through_pagemap_and_process_vm_readv) {
  // Our own pid, through the same path as another process: a mergeable mapping with known contents.
  size_t n = 64;
  auto* p = static_cast<unsigned char*>(mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  CHECK(p != MAP_FAILED);
  madvise(p, n * kPage, MADV_NOHUGEPAGE);
  int merr = madvise(p, n * kPage, MADV_MERGEABLE);
  auto content = Build(16, 8, 4, 4, 8);  // 40 pages, 24 never touched
  std::memcpy(p, content.data(), content.size());
  for (size_t i = 0; i < 40; i++) {
    bool zero = true;
    for (size_t j = 0; j < kPage; j++) zero &= content[i * kPage + j] == 0;
    if (zero) p[i * kPage] = 0;  // touch: written zero pages are resident
  }
  ScanTarget t;
  t.process = true;
  t.pid = getpid();
  t.mergeableOnly = true;
  ScanResult r = Scan({t}, ScanMode::kExact, 2);
  if (merr == 0) {
    CHECK_EQ(r.targets[0].pages, 40ul);
    CHECK_EQ(r.targets[0].absentPages, 24ul);
    CHECK_EQ(r.targets[0].zeroPages, 8ul);
    CHECK_EQ(r.distinct, 20ul);
    CHECK_EQ(r.targets[0].mergingPages, 16ul);
  }
  munmap(p, n * kPage);
}

long RssKib() { return pagefuse_test::StatusKib("VmRSS:"); }

// A forked child holding `len` bytes of pages that differ (251 contents in turn), asleep until killed.
class FilledChild {
 public:
  explicit FilledChild(size_t len) {
    CHECK_EQ(pipe(ready_), 0);
    pid_ = fork();
    if (pid_ == 0) {
      auto* p = static_cast<unsigned char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      for (size_t i = 0; i < len; i += kPage) std::memset(p + i, static_cast<int>(i / kPage % 251) + 1, kPage);
      char c = 1;
      if (write(ready_[1], &c, 1) != 1) _exit(1);
      pause();
      _exit(0);
    }
    char c = 0;
    CHECK_EQ(read(ready_[0], &c, 1), 1l);
  }
  ~FilledChild() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(ready_[0]);
    close(ready_[1]);
  }
  ScanTarget Target() const {
    ScanTarget t;
    t.process = true;
    t.pid = pid_;
    t.mergeableOnly = false;
    return t;
  }

 private:
  int ready_[2] = {-1, -1};
  pid_t pid_ = -1;
};

// A read buffer per pass used to stay in the malloc arena of each pool thread that read a process, and
// concurrent scans start a pool thread per task: RSS grew 12 → 63 MiB over three rounds of six
// concurrent two-thread scans. At most DefaultThreads() buffers (4 MiB each) outlive a scan now.
TEST(process_scans_keep_a_bounded_number_of_read_buffers) {
  FilledChild child(8u << 20);
  const long before = RssKib();
  for (int round = 0; round < 3; round++) {
    std::vector<std::thread> scans;
    uint64_t pages[6] = {};
    for (int i = 0; i < 6; i++) {
      scans.emplace_back([&child, &pages, i] {
        pages[i] = Scan({child.Target()}, ScanMode::kExact, 2).targets[0].pages;
      });
    }
    for (std::thread& s : scans) s.join();
    for (uint64_t n : pages) CHECK(n >= (8u << 20) / kPage);
  }
  const long grown = RssKib() - before;
  if (grown > (DefaultThreads() * 4 + 8) * 1024l) std::printf("RSS grew by %ld KiB\n", grown);
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps freed memory in its quarantine (256 MiB by default): RSS says nothing here.
  std::printf("RSS bound not checked under AddressSanitizer (grew by %ld KiB)\n", grown);
#else
  CHECK(grown <= (DefaultThreads() * 4 + 8) * 1024l);
#endif
}

// The tuner's scan before ksmd starts may read the VMs on several threads, its later rounds on one: the
// idle daemon kept the extra read buffer (4 MiB) of that first round for its whole life.
TEST(a_one_thread_process_scan_keeps_one_read_buffer_after_a_two_thread_one) {
  FilledChild child(256u << 20);
  CHECK(Scan({child.Target()}, ScanMode::kExact, 2).targets[0].pages >= (256ul << 20) / kPage);  // and the fork's own pages
  if (DefaultThreads() >= 2) CHECK_EQ(KeptReadBuffers(), 2ul);  // each thread read a part of the 256 MiB
  CHECK(Scan({child.Target()}, ScanMode::kExact, 1).targets[0].pages >= (256ul << 20) / kPage);
  CHECK_EQ(KeptReadBuffers(), 1ul);
}

// The shared index prefetches its slots for writing where the CPU has PREFETCHW; the kernel names the
// same CPUID bit (0x80000001 ECX bit 8) 3dnowprefetch.
TEST(prefetchw_is_found_where_the_kernel_lists_it) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  bool listed = false;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    listed = (line + " ").find(" 3dnowprefetch ") != std::string::npos;
    break;
  }
  CHECK_EQ(CpuHasPrefetchW(), listed);
  CHECK_EQ(kPrefetchW, listed);
}

TEST_MAIN()
