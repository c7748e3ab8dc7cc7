// A/B harness for the scan's speed: two checkouts' native cores in one process, alternated round by
// round against the same round's best read, so that this VM's swings in memory bandwidth (2 × from one
// minute to the next) fall on both. Built and run by scripts/scan-ab.sh; see docs/scan.md, Speed.
//
// Compiled once per checkout with -DSCAN_AB_SIDE=A or B and -Dpagefuse=<a namespace of its own> (the
// entry points below), and once without SCAN_AB_SIDE (the driver).
#ifdef SCAN_AB_SIDE
#include <string>
#include <vector>

#include "core/hash.h"
#include "core/pool.h"
#include "core/read.h"
#include "core/scan.h"

#define SCAN_AB_CAT2(a, b) a##b
#define SCAN_AB_CAT(a, b) SCAN_AB_CAT2(a, b)
#define SCAN_AB_FN(name) SCAN_AB_CAT(SCAN_AB_SIDE, name)

extern "C" int SCAN_AB_FN(_scan)(const unsigned char* data, unsigned long len, int threads, unsigned long* distinct) {
  std::vector<pagefuse::ScanTarget> targets(1);
  targets[0].data = data;
  targets[0].length = len;
  pagefuse::ScanOptions options;  // the defaults (exact, keepState) but the thread count
  options.threads = threads;
  pagefuse::ScanControl control;
  pagefuse::ScanResult result;
  std::string what;
  int err = pagefuse::RunScan(targets, options, control, &result, &what);
  *distinct = result.distinct;
  return err;
}
extern "C" unsigned long SCAN_AB_FN(_read)(const unsigned char* data, unsigned long len, int threads, int streams) {
  return pagefuse::ReadMemory(pagefuse::Kernels(), data, len, threads, streams);
}
extern "C" const char* SCAN_AB_FN(_kernel)() { return pagefuse::Kernels().name; }
extern "C" int SCAN_AB_FN(_threads)() { return pagefuse::DefaultThreads(); }

#else
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" {
int A_scan(const unsigned char*, unsigned long, int, unsigned long*);
int B_scan(const unsigned char*, unsigned long, int, unsigned long*);
unsigned long A_read(const unsigned char*, unsigned long, int, int);
const char* A_kernel();
const char* B_kernel();
int A_threads();
}

namespace {

double Now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
double Cpu() {
  rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec * 1e-6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec * 1e-6;
}
struct Took {
  double wall, cpu;
};
template <class F>
Took Time(F f) {
  double c0 = Cpu(), w0 = Now();
  f();
  return Took{Now() - w0, Cpu() - c0};
}
double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
}

}  // namespace

// scan-ab MIB ROUNDS: MIB of distinct 4 KiB pages (no huge pages, as the bench), ROUNDS rounds; in each,
// the best of the read in 2, 4 and 8 streams at one thread and at the default count, then both sides'
// scans at each, in alternating order. B's kernels are PAGEFUSE_HASH_KERNELS_B when set.
int main(int argc, char** argv) {
  const size_t len = static_cast<size_t>(argc > 1 ? atoi(argv[1]) : 2048) << 20;
  const int rounds = argc > 2 ? atoi(argv[2]) : 10;
  if (len == 0 || rounds < 1) {
    fprintf(stderr, "usage: scan-ab MIB ROUNDS\n");
    return 2;
  }
  auto* d = static_cast<unsigned char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (d == MAP_FAILED) {
    perror("scan-ab: mmap");
    return 1;
  }
  madvise(d, len, MADV_NOHUGEPAGE);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < len / 8; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    reinterpret_cast<uint64_t*>(d)[i] = x;
  }
  A_kernel();  // each side picks its kernels on first use
  if (const char* b = getenv("PAGEFUSE_HASH_KERNELS_B")) setenv("PAGEFUSE_HASH_KERNELS", b, 1);
  B_kernel();
  const int T = A_threads();
  printf("A %s, B %s; %zu MiB, threads 1 and %d, %d rounds\n", A_kernel(), B_kernel(), len >> 20, T, rounds);
  A_read(d, len, T, 4);  // warm up the pool and the page tables
  std::vector<double> wall[2][2], cpu[2][2];  // [side][threads]: the round's best read time / the scan's
  for (int round = 0; round < rounds; round++) {
    double rw[2] = {1e9, 1e9}, rc[2] = {1e9, 1e9};
    for (int ti = 0; ti < 2; ti++) {
      for (int s : {2, 4, 8}) {
        Took t = Time([&] { A_read(d, len, ti ? T : 1, s); });
        rw[ti] = std::min(rw[ti], t.wall);
        rc[ti] = std::min(rc[ti], t.cpu);
      }
    }
    for (int i = 0; i < 2; i++) {
      const int side = (i + round) % 2;
      for (int ti = 0; ti < 2; ti++) {
        unsigned long distinct = 0;
        int err = 0;
        Took t = Time([&] { err = (side ? B_scan : A_scan)(d, len, ti ? T : 1, &distinct); });
        if (err != 0 || distinct != len / 4096) {
          fprintf(stderr, "scan-ab: side %c: error %d, %lu distinct pages of %zu\n", side ? 'B' : 'A', err, distinct, len / 4096);
          return 1;
        }
        wall[side][ti].push_back(rw[ti] / t.wall);
        cpu[side][ti].push_back(rc[ti] / t.cpu);
      }
    }
  }
  for (int ti = 0; ti < 2; ti++) {
    std::vector<double> pw, pc;
    for (size_t i = 0; i < wall[0][ti].size(); i++) {
      pw.push_back(wall[1][ti][i] / wall[0][ti][i]);
      pc.push_back(cpu[1][ti][i] / cpu[0][ti][i]);
    }
    printf("%d thread(s): x read A %.3f B %.3f (medians; per CPU-s A %.3f B %.3f); B/A paired: wall %.3f (quartiles %.3f-%.3f), CPU %.3f\n",
           ti ? T : 1, Quantile(wall[0][ti], 0.5), Quantile(wall[1][ti], 0.5), Quantile(cpu[0][ti], 0.5), Quantile(cpu[1][ti], 0.5),
           Quantile(pw, 0.5), Quantile(pw, 0.25), Quantile(pw, 0.75), Quantile(pc, 0.5));
  }
  return 0;
}
#endif
