#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/hash.h"
#define XXH_INLINE_ALL
#include "xxhash.h"
#include "test/check.h"

using namespace pagefuse;

static std::vector<unsigned char> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

// The set every other set of the same page hash must agree with.
static const HashKernels& ReferenceFor(const HashKernels& k) {
  const bool xxh3 = std::strstr(k.name, "+xxh3") != nullptr;
  return xxh3 ? BaselineKernels() : *KernelsFor("sse2+aes");
}

TEST(every_kernel_set_this_cpu_runs_hashes_as_its_reference) {
  std::printf("dispatched kernels: %s\n", Kernels().name);
  for (const char* const* name = kKernelNames; *name != nullptr; name++) {
    const HashKernels* set = KernelsFor(*name);
    if (set == nullptr) continue;
    std::printf("checking %s\n", *name);
    const HashKernels& k = *set;
    const HashKernels& b = ReferenceFor(k);
    auto data = RandomBytes(4096 * 3, 1);
    for (size_t len : {0ul, 1ul, 15ul, 64ul, 127ul, 128ul, 129ul, 240ul, 241ul, 4096ul, 4096ul * 3}) {
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
    CHECK_EQ(k.prefilter(data.data(), 4096, 7, &z1), BaselineKernels().prefilter(data.data(), 4096, 7, &z2));
    CHECK(!z1);
    CHECK(!z2);
  }
}

TEST(the_xxh3_kernels_are_xxh3) {
  auto data = RandomBytes(4096, 9);
  CHECK_EQ(BaselineKernels().hash(data.data(), 4096, 42), XXH3_64bits_withSeed(data.data(), 4096, 42));
}

TEST(read_sum_is_the_sum_of_the_words_with_any_set_and_stream_count) {
  auto data = RandomBytes(4096 * 9 + 100, 3);
  for (size_t len : {0ul, 7ul, 8ul, 200ul, 4096ul, 4096ul * 9 + 100}) {
    uint64_t want = 0;
    for (size_t o = 0; o + 8 <= len; o += 8) {
      uint64_t w;
      std::memcpy(&w, data.data() + o, 8);
      want += w;
    }
    for (const char* const* name = kKernelNames; *name != nullptr; name++) {
      const HashKernels* set = KernelsFor(*name);
      if (set == nullptr) continue;
      for (int streams : {1, 2, 3, 4, 8}) CHECK_EQ(set->readSum(data.data(), len, streams), want);
    }
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

// The AES hash's spread, on the structures pages have: one bit apart, a counter in zeros.
TEST(aes_hash_flips_about_half_its_bits_for_any_one_bit_of_input) {
  const HashKernels* k = KernelsFor("sse2+aes");
  if (k == nullptr) return;  // no AES-NI here: the XXH3 kernels are used
  auto page = RandomBytes(4096, 4);
  const uint64_t seed = 0x1234567890abcdefull;
  const uint64_t base = k->hash(page.data(), 4096, seed);
  std::vector<double> flips(64, 0);
  const size_t bits = 4096 * 8;
  for (size_t bit = 0; bit < bits; bit++) {
    page[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    uint64_t d = k->hash(page.data(), 4096, seed) ^ base;
    page[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    CHECK(d != 0);
    for (int b = 0; b < 64; b++) flips[b] += (d >> b) & 1;
  }
  // One standard deviation of the share is 0.5 / sqrt(32768) ≈ 0.003: 0.47–0.53 is ten of them.
  for (int b = 0; b < 64; b++) {
    double share = flips[b] / bits;
    if (share < 0.47 || share > 0.53) std::printf("output bit %d flips with share %.4f\n", b, share);
    CHECK(share > 0.47 && share < 0.53);
  }
}

TEST(aes_hash_of_sparse_pages_has_no_collisions_and_even_low_bits) {
  const HashKernels* k = KernelsFor("sse2+aes");
  if (k == nullptr) return;
  std::vector<unsigned char> page(4096, 0);
  std::vector<uint64_t> hashes;
  // A 32-bit counter at 16 offsets (each 16-byte word position of a 128-byte block, and spread pages).
  for (size_t at : {0ul, 4ul, 16ul, 60ul, 112ul, 124ul, 128ul, 1000ul, 2048ul, 4092ul}) {
    for (uint32_t v = 1; v <= 8192; v++) {
      std::memcpy(page.data() + at, &v, 4);
      hashes.push_back(k->hash(page.data(), 4096, 77));
    }
    std::memset(page.data() + at, 0, 4);
  }
  std::vector<uint64_t> sorted = hashes;
  std::sort(sorted.begin(), sorted.end());
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  // The low bits pick the sample in sampled mode: 1 in 64 of the hashes, within five deviations.
  size_t sampled = 0;
  for (uint64_t h : hashes) sampled += (h & 63) == 0;
  const double expect = hashes.size() / 64.0;
  CHECK(std::abs(static_cast<double>(sampled) - expect) < 5 * std::sqrt(expect));
}

// Pages equal but for one byte, anywhere (the last blocks above all): a difference that enters a lane
// late must be spread over the lane before the lanes are combined (hash_aes.h, Finish). Before it was,
// such pairs collided about 8 times per key among these 12,288 pages.
TEST(aes_hash_of_zero_pages_with_one_byte_set_anywhere_has_no_collisions) {
  const HashKernels* k = KernelsFor("sse2+aes");
  if (k == nullptr) return;
  std::vector<unsigned char> page(4096, 0);
  for (uint64_t seed : {1ull, 0x9e3779b97f4a7c15ull, 0xdeadbeefcafef00dull, 0x0123456789abcdefull}) {
    std::vector<uint64_t> hashes;
    for (size_t at = 0; at < page.size(); at++) {
      for (unsigned char v : {0x01, 0x40, 0x80}) {
        page[at] = v;
        hashes.push_back(k->hash(page.data(), page.size(), seed));
      }
      page[at] = 0;
    }
    std::sort(hashes.begin(), hashes.end());
    size_t equal = 0;
    for (size_t i = 1; i < hashes.size(); i++) equal += hashes[i] == hashes[i - 1];
    if (equal != 0) std::printf("seed %#llx: %zu equal hashes\n", static_cast<unsigned long long>(seed), equal);
    CHECK_EQ(equal, 0u);
  }
}

TEST_MAIN()
