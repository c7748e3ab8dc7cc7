#include <cstring>
#include <random>
#include <vector>

#include "core/hash.h"
#include "test/check.h"

using namespace pagefuse;

static std::vector<unsigned char> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

TEST(every_kernel_set_this_cpu_runs_matches_the_baseline) {
  std::printf("dispatched kernels: %s\n", Kernels().name);
  for (const char* name : {"avx512", "avx2", "sse2"}) {
    const HashKernels* set = KernelsFor(name);
    if (set == nullptr) continue;
    const HashKernels& k = *set;
    const HashKernels& b = BaselineKernels();
    auto data = RandomBytes(4096 * 3, 1);
    for (size_t len : {0ul, 1ul, 64ul, 240ul, 241ul, 4096ul, 4096ul * 3}) {
      CHECK_EQ(k.hash(data.data(), len, 42), b.hash(data.data(), len, 42));
    }
    // hashNext is the same hash, whatever it prefetches, at every length and seed.
    for (size_t len : {0ul, 1ul, 240ul, 241ul, 256ul, 1024ul, 1025ul, 1088ul, 4000ul, 4096ul, 5000ul, 4096ul * 2}) {
      for (uint64_t seed : {0ull, 42ull, ~0ull}) {
        CHECK_EQ(k.hashNext(data.data(), len, seed, data.data() + 4096), b.hash(data.data(), len, seed));
        CHECK_EQ(k.hashNext(data.data(), len, seed, nullptr), b.hash(data.data(), len, seed));
      }
    }
    bool z1 = true, z2 = true;
    CHECK_EQ(k.prefilter(data.data(), 4096, 7, &z1), b.prefilter(data.data(), 4096, 7, &z2));
    CHECK(!z1);
    CHECK(!z2);
    CHECK_EQ(k.readSum(data.data(), data.size()), b.readSum(data.data(), data.size()));
  }
}

TEST(seeds_change_the_hash) {
  auto data = RandomBytes(4096, 2);
  CHECK(Kernels().hash(data.data(), 4096, 1) != Kernels().hash(data.data(), 4096, 2));
  CHECK_EQ(HashSeed(), HashSeed());
}

TEST(zero_detection_sees_a_single_set_byte_anywhere) {
  std::vector<unsigned char> page(4096, 0);
  CHECK(Kernels().isZero(page.data(), page.size()));
  CHECK(BaselineKernels().isZero(page.data(), page.size()));
  for (size_t at : {0ul, 7ul, 255ul, 2048ul, 4095ul}) {
    page[at] = 1;
    CHECK(!Kernels().isZero(page.data(), page.size()));
    page[at] = 0;
  }
  CHECK(Kernels().isZero(page.data(), 13));
}

TEST(prefilter_reads_only_its_lines) {
  std::vector<unsigned char> a(4096, 0), b(4096, 0);
  bool za = false, zb = false;
  a[100] = 1;  // outside the sampled lines: same prefilter, yet the pages differ
  CHECK_EQ(Kernels().prefilter(a.data(), 4096, 3, &za), Kernels().prefilter(b.data(), 4096, 3, &zb));
  CHECK(za);
  a[10] = 1;  // inside the first line
  CHECK(Kernels().prefilter(a.data(), 4096, 3, &za) != Kernels().prefilter(b.data(), 4096, 3, &zb));
  CHECK(!za);
  a[4095] = 1;
  b[4095] = 2;
  CHECK(Kernels().prefilter(a.data(), 4096, 3, &za) != Kernels().prefilter(b.data(), 4096, 3, &zb));
}

TEST_MAIN()
