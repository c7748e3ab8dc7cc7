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

uint64_t KernelReadSum(const void* data, size_t len) {
  const uint64_t* w = static_cast<const uint64_t*>(data);
  size_t n = len / 8;
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += w[i];
    b += w[i + 1];
    c += w[i + 2];
    d += w[i + 3];
  }
  for (; i < n; i++) a += w[i];
  return a + b + c + d;
}

}  // namespace
