// The body of the page-hashing kernels, included once per instruction set by hash_base.cc and
// hash_avx2.cc inside a `#pragma GCC target` section. Everything here is static, so each copy is
// private to its translation unit and the two never mix at link time.
#pragma once

#define XXH_INLINE_ALL
#define XXH_STATIC_LINKING_ONLY
#include "xxhash.h"

namespace {

constexpr size_t kLine = 64;

uint64_t KernelHash(const void* data, size_t len, uint64_t seed) { return XXH3_64bits_withSeed(data, len, seed); }

// XXH3-64 of `len` bytes with `seed`, equal to KernelHash, while it pulls `next` (`len` bytes, or
// nullptr) into the cache a few lines per group of stripes: the hardware prefetcher stops at page
// boundaries, and prefetching a whole page in one burst fills the miss buffers the hash's own loads
// need. The long-input loop is XXH3's own (XXH3_hashLong_internal_loop) split at stripe groups,
// which XXH3_accumulate allows: accumulating stripes [0, a) then [a, b) equals [0, b) in one call.
// It uses xxhash.h's internals (xxhash-addon is pinned to an exact version); hash_test checks that
// it equals XXH3_64bits_withSeed for every kernel set, length class and seed.
uint64_t KernelHashNext(const void* data, size_t len, uint64_t seed, const void* next) {
  if (len <= XXH3_MIDSIZE_MAX || next == nullptr) return XXH3_64bits_withSeed(data, len, seed);
  XXH_ALIGN(XXH_SEC_ALIGN) xxh_u8 secret[XXH_SECRET_DEFAULT_SIZE];
  if (seed == 0) std::memcpy(secret, XXH3_kSecret, sizeof secret);
  else XXH3_initCustomSecret(secret, seed);
  XXH_ALIGN(XXH_ACC_ALIGN) xxh_u64 acc[XXH_ACC_NB] = XXH3_INIT_ACC;
  const xxh_u8* in = static_cast<const xxh_u8*>(data);
  const char* ahead = static_cast<const char*>(next);
  const char* aheadEnd = ahead + len;
  constexpr size_t kStripesPerBlock = (XXH_SECRET_DEFAULT_SIZE - XXH_STRIPE_LEN) / XXH_SECRET_CONSUME_RATE;
  constexpr size_t kBlock = XXH_STRIPE_LEN * kStripesPerBlock;
  constexpr size_t kGroup = 8;  // stripes between two rounds of prefetches (measured: 8 beats 2, 4 and 16)
  static_assert(kStripesPerBlock % kGroup == 0, "a group never straddles a scramble");
  // Lines of `next` to request per group so that all of it is requested by the end.
  const size_t groups = (len - 1) / XXH_STRIPE_LEN / kGroup + 1;
  const size_t perGroup = (len / kLine + groups - 1) / groups;
  auto pull = [&] {
    for (size_t i = 0; i < perGroup && ahead < aheadEnd; i++, ahead += kLine) XXH_PREFETCH(ahead);
  };
  const size_t blocks = (len - 1) / kBlock;
  for (size_t n = 0; n < blocks; n++) {
    for (size_t s = 0; s < kStripesPerBlock; s += kGroup) {
      pull();
      XXH3_accumulate(acc, in + n * kBlock + s * XXH_STRIPE_LEN, secret + s * XXH_SECRET_CONSUME_RATE, kGroup);
    }
    XXH3_scrambleAcc(acc, secret + sizeof secret - XXH_STRIPE_LEN);
  }
  // Last partial block, then the last stripe.
  const size_t stripes = ((len - 1) - kBlock * blocks) / XXH_STRIPE_LEN;
  for (size_t s = 0; s < stripes; s += kGroup) {
    pull();
    const size_t take = stripes - s < kGroup ? stripes - s : kGroup;
    XXH3_accumulate(acc, in + blocks * kBlock + s * XXH_STRIPE_LEN, secret + s * XXH_SECRET_CONSUME_RATE, take);
  }
  while (ahead < aheadEnd) pull();
  XXH3_accumulate_512(acc, in + len - XXH_STRIPE_LEN, secret + sizeof secret - XXH_STRIPE_LEN - XXH_SECRET_LASTACC_START);
  return XXH3_finalizeLong_64b(acc, secret, static_cast<xxh_u64>(len));
}

uint64_t KernelPrefilter(const void* page, size_t len, uint64_t seed, bool* linesZero) {
  // First line, two spread through the middle (off any 1 KiB boundary a header would sit on), last line.
  const unsigned char* p = static_cast<const unsigned char*>(page);
  const size_t offsets[4] = {0, (len / 4 + kLine * 3) & ~(kLine - 1), (len / 2 + kLine * 7) & ~(kLine - 1), len - kLine};
  alignas(64) unsigned char lines[4 * kLine];
  uint64_t any = 0;
  for (int i = 0; i < 4; i++) {
    const uint64_t* src = reinterpret_cast<const uint64_t*>(p + offsets[i]);
    uint64_t* dst = reinterpret_cast<uint64_t*>(lines + i * kLine);
    for (size_t w = 0; w < kLine / 8; w++) {
      dst[w] = src[w];
      any |= src[w];
    }
  }
  *linesZero = any == 0;
  return XXH3_64bits_withSeed(lines, sizeof lines, seed);
}

bool KernelIsZero(const void* data, size_t len) {
  const uint64_t* w = static_cast<const uint64_t*>(data);
  size_t n = len / 8;
  for (size_t i = 0; i < n; i += 32) {
    uint64_t acc = 0;
    size_t end = i + 32 < n ? i + 32 : n;
    for (size_t j = i; j < end; j++) acc |= w[j];
    if (acc != 0) return false;
  }
  const unsigned char* tail = static_cast<const unsigned char*>(data) + n * 8;
  for (size_t i = 0; i < len % 8; i++) {
    if (tail[i] != 0) return false;
  }
  return true;
}

// The width of the read baseline's loads: the widest vector this translation unit is built for.
#if XXH_VECTOR == XXH_AVX512
constexpr size_t kReadBytes = 64;
#elif XXH_VECTOR == XXH_AVX2
constexpr size_t kReadBytes = 32;
#else
constexpr size_t kReadBytes = 16;
#endif
typedef uint64_t ReadVec __attribute__((vector_size(kReadBytes)));

inline ReadVec LoadVec(const unsigned char* p) {
  ReadVec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// S parts of `part` bytes each (a multiple of 4 vectors), read side by side: four loads per part and
// step, each part into its own accumulator.
template <int S>
uint64_t ReadParts(const unsigned char* d, size_t part) {
  ReadVec acc[S] = {};
  for (size_t i = 0; i < part; i += 4 * kReadBytes) {
    for (int s = 0; s < S; s++) {
      const unsigned char* p = d + s * part + i;
      acc[s] += (LoadVec(p) + LoadVec(p + kReadBytes)) + (LoadVec(p + 2 * kReadBytes) + LoadVec(p + 3 * kReadBytes));
    }
  }
  ReadVec all = acc[0];
  for (int s = 1; s < S; s++) all += acc[s];
  uint64_t sum = 0;
  for (size_t i = 0; i < kReadBytes / 8; i++) sum += all[i];
  return sum;
}

uint64_t KernelReadSum(const void* data, size_t len, int streams) {
  const unsigned char* d = static_cast<const unsigned char*>(data);
  const int s = streams >= 8 ? 8 : streams >= 4 ? 4 : streams >= 2 ? 2 : 1;
  const size_t part = len / s / (4 * kReadBytes) * (4 * kReadBytes);
  uint64_t sum = 0;
  switch (s) {
    case 8: sum = ReadParts<8>(d, part); break;
    case 4: sum = ReadParts<4>(d, part); break;
    case 2: sum = ReadParts<2>(d, part); break;
    default: sum = ReadParts<1>(d, part); break;
  }
  // The rest, one word at a time.
  for (size_t o = part * s; o + 8 <= len; o += 8) {
    uint64_t w;
    std::memcpy(&w, d + o, 8);
    sum += w;
  }
  return sum;
}

}  // namespace
