// Keyed sketches: the SipHash-2-4 reference vector, zero pages left out, and keys that share nothing.
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/sketch.h"
#include "test/check.h"

using namespace pagefuse;

namespace {

const size_t kPage = 4096;

std::vector<unsigned char> Pages(size_t pages, uint32_t seed) {
  std::vector<unsigned char> buf(pages * kPage);
  for (size_t p = 0; p < pages; p++) {
    uint32_t v = seed * 2654435761u + static_cast<uint32_t>(p) * 40503u + 1;
    std::memcpy(&buf[p * kPage], &v, 4);
    std::memcpy(&buf[p * kPage + 2048], &seed, 4);
  }
  return buf;
}

SketchResult Sketch(const std::vector<unsigned char>& buf, SketchKey key, uint64_t modulus) {
  SketchResult r;
  std::vector<uint64_t> sampled;
  SketchBytes(buf.data(), buf.size(), key, modulus, &sampled, &r);
  FinishSketch(&sampled, &r);
  return r;
}

}  // namespace

TEST(siphash_matches_the_reference_vector) {
  // Key 00 01 .. 0f, message 00 01 .. 07: the paper's test vector for an 8-byte input.
  SketchKey key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  CHECK_EQ(SipHash24(key, 0x0706050403020100ull), 0x93f5f5799a932462ull);
}

TEST(zero_pages_are_counted_and_never_sampled) {
  std::vector<unsigned char> buf(8 * kPage, 0);
  SketchResult r = Sketch(buf, SketchKey{1, 2}, 1);
  CHECK_EQ(r.pages, 8u);
  CHECK_EQ(r.zeroPages, 8u);
  CHECK_EQ(r.values.size(), 0u);
}

TEST(modulus_one_keeps_every_distinct_page_with_its_count) {
  std::vector<unsigned char> buf = Pages(100, 7);
  std::vector<unsigned char> twice(buf);
  twice.insert(twice.end(), buf.begin(), buf.begin() + 10 * kPage);
  SketchResult r = Sketch(twice, SketchKey{3, 4}, 1);
  CHECK_EQ(r.values.size(), 100u);
  uint64_t total = 0, doubled = 0;
  for (uint32_t c : r.counts) {
    total += c;
    doubled += c == 2;
  }
  CHECK_EQ(total, 110u);
  CHECK_EQ(doubled, 10u);
}

TEST(different_keys_share_no_value) {
  std::vector<unsigned char> buf = Pages(2000, 9);
  SketchResult a = Sketch(buf, SketchKey{1, 1}, 1);
  SketchResult b = Sketch(buf, SketchKey{1, 2}, 1);
  size_t common = 0;
  for (size_t i = 0, j = 0; i < a.values.size() && j < b.values.size();) {
    if (a.values[i] == b.values[j]) {
      common++;
      i++;
      j++;
    } else if (a.values[i] < b.values[j]) {
      i++;
    } else {
      j++;
    }
  }
  CHECK_EQ(a.values.size(), 2000u);
  CHECK_EQ(common, 0u);
}

TEST(sampled_values_are_zero_modulo_the_modulus) {
  std::vector<unsigned char> buf = Pages(4096, 11);
  SketchResult r = Sketch(buf, SketchKey{5, 6}, 16);
  bool aligned = true;
  for (uint64_t v : r.values) aligned = aligned && (v & 15) == 0;
  CHECK(aligned);
  // 4096 distinct pages at 1/16: 256 expected, and far outside 150..362 only with p < 1e-9.
  CHECK(r.values.size() > 150 && r.values.size() < 362);
}

TEST_MAIN()
